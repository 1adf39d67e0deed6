//go:build linux

package plane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestNoAllocation: forwarding a packet allocates nothing (the sending
// and receiving parties included).
func TestNoAllocation(t *testing.T) {
	p, _ := newPlane(t, Config{Readers: 1})
	c := newCall(t, p, lo4, lo4, false, false)
	pkt, buf := rtpPacket(1), make([]byte, 2048)
	c.pb.rtp.SetReadDeadline(time.Now().Add(time.Minute))
	once := func() {
		if _, err := c.pa.rtp.WriteToUDPAddrPort(pkt, c.a.Addr()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.pb.rtp.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	once() // latch
	if n := testing.AllocsPerRun(1000, once); n != 0 {
		t.Errorf("%v allocations per forwarded packet, want none", n)
	}
	// Counted after the send, so the last receipt can come first.
	waitFor(t, "the count", func() bool { return c.a.Stats().Packets >= 1002 })
	if got := c.a.Stats().Packets; got != 1002 {
		t.Errorf("%d packets forwarded, want 1002", got)
	}
}

// raiseFileLimit makes room for n more descriptors, as far as it can; it
// returns how many it may use.
func raiseFileLimit(t *testing.T, n uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	const slack = 512 // what the test binary has open besides
	if lim.Cur >= n+slack {
		return n
	}
	orig := lim
	want := syscall.Rlimit{Cur: n + slack, Max: max(lim.Max, n+slack)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
		return n
	}
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	return lim.Max - slack
}

// TestManyLegs: 10 000 legs (5 000 streams) on two readers, the heap
// each takes, and one packet through every stream, all at once.
func TestManyLegs(t *testing.T) {
	legs := int(raiseFileLimit(t, 2*10000) / 2 &^ 1)
	if legs < 10000 {
		t.Logf("the file limit allows %d legs, not 10000", legs)
	}
	p, _ := newPlane(t, Config{PortMin: 40000, PortMax: 60999, Readers: 2})
	x, y := listen(t, lo4), listen(t, lo4) // all callers, all callees

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ls := make([]*Leg, 0, legs)
	for range legs {
		l, err := p.Allocate(lo4)
		if err != nil {
			t.Fatalf("leg %d: %v", len(ls), err)
		}
		ls = append(ls, l)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perLeg := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(legs)
	t.Logf("%d legs: %.0f bytes of heap per leg (kernel socket buffers not included)", legs, perLeg)
	if perLeg > 1024 {
		t.Errorf("%.0f bytes per leg", perLeg)
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()

	streams := legs / 2
	src := make(map[netip.AddrPort]int, streams) // callee-facing leg → stream
	for i := range streams {
		a, b := ls[2*i], ls[2*i+1]
		a.SetPeer(addrOf(x), netip.AddrPort{}, true)
		b.SetPeer(addrOf(y), netip.AddrPort{}, true)
		Link(a, b)
		src[b.Addr()] = i
	}
	got := make([]int, streams)
	tokens := make(chan struct{}, 64) // packets in flight: none lost to a full socket buffer
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		y.SetReadDeadline(time.Now().Add(time.Minute))
		for range streams {
			n, from, err := y.ReadFromUDPAddrPort(buf)
			if err != nil {
				done <- err
				return
			}
			<-tokens
			i, ok := src[from]
			if ok && n == 172 && int(binary.BigEndian.Uint32(buf[8:])) == i {
				got[i]++
			}
		}
		done <- nil
	}()
	pkt := rtpPacket(1)
	for i := range streams {
		tokens <- struct{}{}
		binary.BigEndian.PutUint32(pkt[8:], uint32(i)) // the SSRC names the stream
		if _, err := x.WriteToUDPAddrPort(pkt, ls[2*i].Addr()); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, n := range got {
		if n != 1 {
			t.Fatalf("stream %d: %d packets out of the right leg, want 1", i, n)
		}
	}
}

// pump sends b.N packets from sender to dests in turn, at most 64 in
// flight, and waits until recvr has them all.
func pump(b *testing.B, sender *net.UDPConn, dests []netip.AddrPort, recvr *net.UDPConn) {
	b.Helper()
	tokens := make(chan struct{}, 64)
	done := make(chan error, 1)
	n := b.N
	go func() {
		buf := make([]byte, 2048)
		recvr.SetReadDeadline(time.Now().Add(time.Minute))
		for range n {
			if _, _, err := recvr.ReadFromUDPAddrPort(buf); err != nil {
				done <- err
				return
			}
			<-tokens
		}
		done <- nil
	}()
	pkt := rtpPacket(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range n {
		select {
		case tokens <- struct{}{}:
		case err := <-done:
			b.Fatalf("after %d packets: %v", i, err)
		}
		if _, err := sender.WriteToUDPAddrPort(pkt, dests[i%len(dests)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkForward: one stream; an op is one packet from the sending
// party through the plane to the receiving party (their syscalls
// included).
func BenchmarkForward(b *testing.B) {
	p, _ := newPlane(b, Config{})
	x, y := listen(b, lo4), listen(b, lo4)
	a, l := allocate(b, p, lo4), allocate(b, p, lo4)
	a.SetPeer(addrOf(x), netip.AddrPort{}, false)
	l.SetPeer(addrOf(y), netip.AddrPort{}, false)
	Link(a, l)
	pump(b, x, []netip.AddrPort{a.Addr()}, y)
	reportBatch(b, p)
}

// BenchmarkForwardManyLegs: 1 000 streams (2 000 legs) fed in turn.
func BenchmarkForwardManyLegs(b *testing.B) {
	p, _ := newPlane(b, Config{PortMin: 40000, PortMax: 49999})
	x, y := listen(b, lo4), listen(b, lo4)
	var dests []netip.AddrPort
	for range 1000 {
		a, l := allocate(b, p, lo4), allocate(b, p, lo4)
		a.SetPeer(addrOf(x), netip.AddrPort{}, false)
		l.SetPeer(addrOf(y), netip.AddrPort{}, false)
		Link(a, l)
		dests = append(dests, a.Addr())
	}
	pump(b, x, dests, y)
	reportBatch(b, p)
}

// BenchmarkForwardBurst: one stream fed in bursts of 32 (sendmmsg) and
// drained with recvmmsg at the far end, at most 128 packets in flight:
// the plane's batches fill, as under load.
func BenchmarkForwardBurst(b *testing.B) {
	p, _ := newPlane(b, Config{})
	a, l := allocate(b, p, lo4), allocate(b, p, lo4)
	tx, txAddr := rawSocket(b)
	rx, rxAddr := rawSocket(b)
	a.SetPeer(txAddr, netip.AddrPort{}, false)
	l.SetPeer(rxAddr, netip.AddrPort{}, false)
	Link(a, l)
	burst(b, tx, rx, a.Addr())
	reportBatch(b, p)
}

// reportBatch reports the packets per recvmmsg of the plane's readers.
func reportBatch(b *testing.B, p *Plane) {
	var packets, reads uint64
	for _, c := range p.counters() {
		packets += c.packets.Load()
		reads += c.reads.Load()
	}
	if reads > 0 {
		b.ReportMetric(float64(packets)/float64(reads), "pkts/read")
	}
}

// BenchmarkLoopbackBurst is BenchmarkForwardBurst without the plane:
// the parties' own cost, to subtract.
func BenchmarkLoopbackBurst(b *testing.B) {
	tx, _ := rawSocket(b)
	rx, rxAddr := rawSocket(b)
	burst(b, tx, rx, rxAddr)
}

// burst sends b.N packets from tx to dst in sendmmsg bursts and reads
// them on rx with recvmmsg.
func burst(b *testing.B, tx, rx int, dst netip.AddrPort) {

	const burst = 32
	pkt := rtpPacket(1)
	var sa unix.RawSockaddrInet6
	namelen := toSockaddr(&sa, dst, false)
	var out [burst]mmsghdr
	var iov unix.Iovec
	iov.Base = &pkt[0]
	iov.SetLen(len(pkt))
	for i := range out {
		out[i].hdr.Name = (*byte)(unsafe.Pointer(&sa))
		out[i].hdr.Namelen = namelen
		out[i].hdr.Iov = &iov
		out[i].hdr.SetIovlen(1)
	}
	// Two bursts in flight: more could overflow a socket's default
	// receive buffer (a loss would stop the benchmark).
	tokens := make(chan struct{}, 2*burst)
	done := make(chan error, 1)
	n := b.N
	go func() {
		var in [burst]mmsghdr
		var iovs [burst]unix.Iovec
		var bufs [burst][2048]byte
		for i := range in {
			iovs[i].Base = &bufs[i][0]
			iovs[i].SetLen(2048)
			in[i].hdr.Iov = &iovs[i]
			in[i].hdr.SetIovlen(1)
		}
		for got := 0; got < n; {
			k, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(rx), uintptr(unsafe.Pointer(&in[0])), burst, unix.MSG_WAITFORONE, 0, 0)
			if e == unix.EINTR { // the runtime's preemption signal
				continue
			}
			if e != 0 {
				done <- e
				return
			}
			for range k {
				<-tokens
			}
			got += int(k)
		}
		done <- nil
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < n; {
		k := min(burst, n-sent)
		for range k {
			select {
			case tokens <- struct{}{}:
			case err := <-done:
				b.Fatalf("after %d packets: %v", sent, err)
			}
		}
		for m := out[:k]; len(m) > 0; {
			j, e := sendmmsg(tx, m)
			if e != 0 {
				b.Fatal(e)
			}
			m = m[j:]
		}
		sent += k
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// rawSocket is a blocking UDP socket on 127.0.0.1 that gives up reading
// after a minute (a lost packet fails the benchmark instead of hanging).
func rawSocket(b *testing.B) (int, netip.AddrPort) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	tv := unix.Timeval{Sec: 60}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		b.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		b.Fatal(err)
	}
	return fd, netip.AddrPortFrom(lo4, uint16(sa.(*unix.SockaddrInet4).Port))
}

// The kernel's struct mmsghdr: 64 bytes on 64-bit platforms, 32 on
// 32-bit ones; recvmmsg writes msg_len at the offset after msghdr.
func TestMmsghdrLayout(t *testing.T) {
	want := map[uintptr]uintptr{8: 64, 4: 32}[unsafe.Sizeof(uintptr(0))]
	if got := unsafe.Sizeof(mmsghdr{}); got != want {
		t.Errorf("sizeof(mmsghdr) = %d, want %d", got, want)
	}
	if off := unsafe.Offsetof(mmsghdr{}.n); off != unsafe.Sizeof(unix.Msghdr{}) {
		t.Errorf("msg_len at %d", off)
	}
}
