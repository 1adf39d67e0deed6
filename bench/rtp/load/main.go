// Command load drives a media relay (hlas's relayd or rtpengine) with N
// G.711 calls over NG and measures it: it sets the calls up through the
// relay's NG control socket (media/rtpengine's client, so both relays
// are driven alike), then every party sends 50 packets a second of
// 172-byte RTP (12-byte header, 160 bytes of 20 ms PCMU) to its relay
// port for the run, and counts what arrives at the other party. It reads
// the relay's CPU time (utime+stime) and VmRSS from /proc, and the whole
// machine's busy CPU time from /proc/stat, and prints one RESULT line of
// key=value pairs.
//
// The machine's figure is what counts for a relay that forwards in the
// kernel: that work runs in softirq context, charged to no process (or
// to the sender). With -direct the parties send to each other with no
// relay between them: its machine CPU per packet is the driver's own,
// which, subtracted, leaves the relay's share for any relay.
//
// The driver stays small: a few sender goroutines pace all sockets with a
// 1 ms slot wheel (each socket sends in one of 20 slots), a few receiver
// goroutines each own an epoll set. Its own CPU and the senders' worst
// lag are printed so that a saturated driver is seen.
//
// usage: load -ng 127.0.0.1:2223 -pid PID -calls 1000 -duration 20s
//
//	load -direct -calls 1000 -duration 20s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/media/rtpengine"
)

const (
	pktSize = 172 // 12-byte RTP header + 160 bytes of PCMU (20 ms at 8 kHz)
	slots   = 20  // 1 ms slots in the 20 ms packet period
)

// party is one end of a call: a connected UDP socket on 127.0.0.1.
type party struct {
	fd   int
	port int
}

// tx is a socket's sender state (owned by one sender goroutine).
type tx struct {
	fd        int
	dst       int // port on 127.0.0.1 (shared sockets are not connected)
	seq       uint16
	ts, ssrc  uint32
	sent, err uint64
}

// count records a packet of the stream (its sequence number, and its
// delay in late if it was sent in the measured window win), at now ns
// since the start.
func (x *rx) count(pkt []byte, now uint64, win [2]uint64, late *[6]uint64) {
	x.recv++
	seq := uint16(pkt[2])<<8 | uint16(pkt[3])
	if x.any && int16(seq-x.highest) <= 0 {
		x.ooo++
	} else {
		x.highest, x.any = seq, true
	}
	var sentAt uint64
	for b := range 8 {
		sentAt = sentAt<<8 | uint64(pkt[12+b])
	}
	if sentAt < win[0] || sentAt >= win[1] {
		return // sent outside the measured time
	}
	bounds := [...]uint64{1e6, 5e6, 10e6, 20e6, 50e6} // late's buckets: ≥1, 5, 10, 20, 50 ms
	h := 0
	for h < len(bounds) && now-sentAt >= bounds[h] {
		h++
	}
	late[h]++
}

// rx is a socket's receiver state (owned by one receiver goroutine).
type rx struct {
	fd       int
	recv     uint64
	ooo      uint64 // sequence number not above the highest seen
	highest  uint16
	any      bool
	wrongLen uint64
}

func main() {
	ng := flag.String("ng", "127.0.0.1:2223", "relay's NG control address")
	pid := flag.Int("pid", 0, "relay's process id (CPU and RSS from /proc)")
	calls := flag.Int("calls", 500, "concurrent calls (2 streams, 2 sockets each)")
	duration := flag.Duration("duration", 20*time.Second, "measured time")
	warmup := flag.Duration("warmup", 3*time.Second, "media before the measured time")
	drain := flag.Duration("drain", time.Second, "wait for stragglers after the senders stop")
	senders := flag.Int("senders", runtime.GOMAXPROCS(0), "sender goroutines")
	receivers := flag.Int("receivers", runtime.GOMAXPROCS(0), "receiver goroutines (epoll sets)")
	rxPause := flag.Duration("rxpause", time.Millisecond, "receivers' pause between epoll passes (batches reads)")
	label := flag.String("label", "relay", "name printed in the RESULT line")
	direct := flag.Bool("direct", false, "no relay: the parties of each call send to each other (the driver's own cost)")
	shared := flag.Int("shared", 0, "N > 0: the parties share 2N sockets and send with sendmmsg "+
		"(a driver cheap enough for thousands of calls); 0: a socket per party")
	flag.Parse()
	if *direct {
		*pid = os.Getpid() // no relay process: its figures are the driver's, printed as 0
	}
	if *pid <= 0 {
		log.Fatal("load: -pid is required")
	}
	rssBase := rssKB(*pid)

	var cl *rtpengine.Client
	ctx := context.Background()
	if !*direct {
		var err error
		cl, err = rtpengine.New(rtpengine.Config{Address: *ng, Timeout: 2 * time.Second, MaxPending: 64})
		if err != nil {
			log.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Ping(ctx); err != nil {
			log.Fatalf("load: ping %s: %v", *ng, err)
		}
	}
	var err error

	n := *calls
	parties := make([]party, 2*n) // 2i: caller of call i, 2i+1: callee
	var sockets []party           // the shared sockets: 2g callers, 2g+1 callees of group g
	if *shared > 0 {
		*senders, *receivers = *shared, min(*receivers, 2**shared)
		for i := range 2 * *shared {
			p, err := socket()
			if err == nil {
				err = bigBuffers(p.fd)
			}
			if err != nil {
				log.Fatalf("load: socket %d: %v", i, err)
			}
			sockets = append(sockets, p)
		}
		for i := range n {
			g := i % *shared
			parties[2*i], parties[2*i+1] = sockets[2*g], sockets[2*g+1]
		}
	} else {
		for i := range parties {
			if parties[i], err = socket(); err != nil {
				log.Fatalf("load: socket %d: %v", i, err)
			}
		}
	}
	dst := make([]int, 2*n) // where party j sends
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	t0 := time.Now()
	if *direct {
		err = pair(parties, dst, *shared == 0)
	} else {
		err = setup(ctx, cl, parties, dst, *shared == 0, runID)
	}
	if err != nil {
		log.Fatalf("load: setup: %v", err)
	}
	setupTime := time.Since(t0)
	rssCalls := rssKB(*pid)

	txs := make([]tx, len(parties))
	rxs := make([]rx, len(parties))
	for i, p := range parties {
		txs[i] = tx{fd: p.fd, dst: dst[i], ssrc: uint32(i + 1), ts: uint32(i) * 1000, seq: uint16(i * 7)}
		rxs[i] = rx{fd: p.fd}
	}
	start := time.Now()
	var stopTx, stopRx atomic.Bool
	var wgTx, wgRx sync.WaitGroup
	lags := make([]time.Duration, *senders)
	for s := range *senders {
		wgTx.Add(1)
		go func() {
			defer wgTx.Done()
			if *shared > 0 {
				lags[s] = sendShared(txs, s, *shared, start, &stopTx)
			} else {
				lags[s] = send(txs, s, *senders, start, &stopTx)
			}
		}()
	}
	// Delays are counted for the packets sent in the measured time only:
	// a relay's first seconds (latching, set-up) are not its steady state.
	win := [2]uint64{uint64(*warmup), uint64(*warmup + *duration)}
	recvd := make([]atomic.Uint64, *receivers)
	lateH := make([][6]uint64, *receivers)
	for r := range *receivers {
		wgRx.Add(1)
		go func() {
			defer wgRx.Done()
			var err error
			if *shared > 0 {
				err = receiveShared(sockets, rxs, r, *receivers, start, win, *rxPause, &stopRx, &recvd[r], &lateH[r])
			} else {
				err = receive(rxs, r, *receivers, start, win, *rxPause, &stopRx, &recvd[r], &lateH[r])
			}
			if err != nil {
				log.Fatal(err)
			}
		}()
	}
	sum := func() (s uint64) {
		for i := range recvd {
			s += recvd[i].Load()
		}
		return s
	}
	time.Sleep(*warmup)
	w0, r0, c0, d0, m0 := time.Now(), sum(), cpuTicks(*pid), cpuTicks(os.Getpid()), machineTicks()
	time.Sleep(*duration)
	w1, r1, c1, d1, m1 := time.Now(), sum(), cpuTicks(*pid), cpuTicks(os.Getpid()), machineTicks()
	rss := rssKB(*pid)
	stopTx.Store(true)
	wgTx.Wait()
	time.Sleep(*drain)
	stopRx.Store(true)
	wgRx.Wait()

	var sent, sendErr, got, ooo uint64
	for i := range txs {
		sent += txs[i].sent
		sendErr += txs[i].err
		got += rxs[i].recv
		ooo += rxs[i].ooo
	}
	var late [6]uint64 // late[i]: packets delayed at least bound i-1 (cumulative)
	for _, h := range lateH {
		for i := range late {
			for b := i; b < len(h); b++ {
				late[i] += h[b]
			}
		}
	}
	var maxLag time.Duration
	for _, l := range lags {
		maxLag = max(maxLag, l)
	}
	if !*direct {
		teardown(cl, n, runID)
	}

	wall := w1.Sub(w0).Seconds()
	fwd := r1 - r0
	const tick = 100.0 // CLK_TCK
	relayCPU := float64(c1-c0) / tick
	driverCPU := float64(d1-d0) / tick
	machineCPU := float64(m1-m0) / tick
	if *direct {
		relayCPU, rss, rssBase, rssCalls = 0, 0, 0, 0
	}
	lost := int64(sent) - int64(got)
	streams := 2 * n
	fmt.Printf("RESULT relay=%s calls=%d streams=%d sent=%d recv=%d lost=%d loss_pct=%.4f send_err=%d ooo=%d "+
		"delay_ge1ms=%d delay_ge5ms=%d delay_ge10ms=%d delay_ge20ms=%d delay_ge50ms=%d "+
		"pps=%.0f relay_cpu_pct=%.1f relay_us_per_pkt=%.3f rss_kb=%d rss_base_kb=%d rss_calls_kb=%d rss_per_stream_kb=%.2f "+
		"driver_cpu_pct=%.1f machine_cpu_pct=%.1f machine_us_per_pkt=%.3f sender_max_lag_ms=%.2f setup_s=%.2f\n",
		*label, n, streams, sent, got, lost, 100*float64(lost)/float64(max(sent, 1)), sendErr, ooo,
		late[1], late[2], late[3], late[4], late[5],
		float64(fwd)/wall, 100*relayCPU/wall, 1e6*relayCPU/float64(max(fwd, 1)),
		rss, rssBase, rssCalls, float64(rss-rssBase)/float64(streams),
		100*driverCPU/wall, 100*machineCPU/wall, 1e6*machineCPU/float64(max(fwd, 1)), float64(maxLag)/1e6, setupTime.Seconds())
}

// socket opens a non-blocking UDP socket on 127.0.0.1 (ephemeral port).
func socket() (party, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return party{}, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return party{}, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return party{}, err
	}
	return party{fd: fd, port: sa.(*unix.SockaddrInet4).Port}, nil
}

func sdp(port int) []byte {
	return fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n", port)
}

// mediaPort is the port of the first m= line of an SDP body.
func mediaPort(body []byte) (int, error) {
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "m=audio "); ok {
			f, _, _ := strings.Cut(rest, " ")
			return strconv.Atoi(f)
		}
	}
	return 0, errors.New("no m=audio line")
}

// setup makes every call through NG (a few at a time) and connects each
// party's socket to the relay port it must send to.
func setup(ctx context.Context, cl *rtpengine.Client, parties []party, dst []int, connect bool, runID string) error {
	lo := netip.MustParseAddr("127.0.0.1")
	n := len(parties) / 2
	var next atomic.Int64
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				a, b := parties[2*i], parties[2*i+1]
				id, ta, tb := runID+"-"+strconv.Itoa(i), "a"+strconv.Itoa(i), "b"+strconv.Itoa(i)
				off, err := cl.Offer(ctx, &media.Request{CallID: id, FromTag: ta, SDP: sdp(a.port), Source: lo, Local: lo, Advertise: lo})
				if err != nil {
					errs <- fmt.Errorf("offer %d: %w", i, err)
					return
				}
				ans, err := cl.Answer(ctx, &media.Request{CallID: id, FromTag: tb, ToTag: ta, SDP: sdp(b.port), Source: lo, Local: lo, Advertise: lo})
				if err != nil {
					errs <- fmt.Errorf("answer %d: %w", i, err)
					return
				}
				pb, err1 := mediaPort(off) // the callee sends here
				pa, err2 := mediaPort(ans) // the caller sends here
				if err := errors.Join(err1, err2); err != nil {
					errs <- fmt.Errorf("call %d: %w", i, err)
					return
				}
				dst[2*i], dst[2*i+1] = pa, pb
				if err := route(parties, dst, i, connect); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// pair connects the two parties of each call to each other (-direct).
func pair(parties []party, dst []int, connect bool) error {
	for i := 0; i < len(parties); i += 2 {
		dst[i], dst[i+1] = parties[i+1].port, parties[i].port
		if err := route(parties, dst, i/2, connect); err != nil {
			return err
		}
	}
	return nil
}

// route connects the parties of call i to their destinations, unless
// they share sockets.
func route(parties []party, dst []int, i int, connect bool) error {
	if !connect {
		return nil
	}
	a, b := parties[2*i], parties[2*i+1]
	err1 := unix.Connect(a.fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: dst[2*i]})
	err2 := unix.Connect(b.fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: dst[2*i+1]})
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("connect %d: %w", i, err)
	}
	return nil
}

// bigBuffers gives a shared socket 8 MiB each way: it carries the
// packets of thousands of streams.
func bigBuffers(fd int) error {
	for _, opt := range []int{unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 8<<20); err != nil {
			return err
		}
	}
	return nil
}

// mmsghdr is struct mmsghdr (x/sys/unix has no sendmmsg/recvmmsg).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

func mmsg(trap uintptr, fd int, msgs []mmsghdr) (int, error) {
	n, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sendShared is send for shared sockets: sender s owns the calls i with
// i%k == s, whose parties send from sockets 2s and 2s+1 (parties[].fd),
// in slot (i/k)%20, every due packet of a socket in sendmmsg batches.
func sendShared(txs []tx, s, k int, start time.Time, stop *atomic.Bool) (worst time.Duration) {
	var bySlot [slots][]int
	for i := s; 2*i < len(txs); i += k {
		bySlot[(i/k)%slots] = append(bySlot[(i/k)%slots], 2*i, 2*i+1)
	}
	pkts := make([][pktSize]byte, len(txs))
	names := make([]unix.RawSockaddrInet4, len(txs))
	iovs := make([]unix.Iovec, len(txs))
	for j := range pkts {
		for i := 12; i < pktSize; i++ {
			pkts[j][i] = 0xff
		}
		pkts[j][0] = 0x80
		names[j] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{127, 0, 0, 1}}
		names[j].Port = uint16(txs[j].dst>>8) | uint16(txs[j].dst&0xff)<<8
		iovs[j].Base = &pkts[j][0]
		iovs[j].SetLen(pktSize)
	}
	var msgs [2][]mmsghdr // by side: callers, callees
	var idx [2][]int
	for tick := 0; !stop.Load(); tick++ {
		due := start.Add(time.Duration(tick) * time.Millisecond)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else {
			worst = max(worst, -d)
		}
		now := uint64(time.Since(start))
		for side := range msgs {
			msgs[side], idx[side] = msgs[side][:0], idx[side][:0]
		}
		for _, j := range bySlot[tick%slots] {
			t, p := &txs[j], &pkts[j]
			t.seq++
			t.ts += 160
			p[2], p[3] = byte(t.seq>>8), byte(t.seq)
			p[4], p[5], p[6], p[7] = byte(t.ts>>24), byte(t.ts>>16), byte(t.ts>>8), byte(t.ts)
			p[8], p[9], p[10], p[11] = byte(t.ssrc>>24), byte(t.ssrc>>16), byte(t.ssrc>>8), byte(t.ssrc)
			for b := range 8 {
				p[12+b] = byte(now >> (56 - 8*b))
			}
			var m mmsghdr
			m.hdr.Name = (*byte)(unsafe.Pointer(&names[j]))
			m.hdr.Namelen = unix.SizeofSockaddrInet4
			m.hdr.Iov = &iovs[j]
			m.hdr.SetIovlen(1)
			msgs[j%2] = append(msgs[j%2], m)
			idx[j%2] = append(idx[j%2], j)
		}
		for side := range msgs {
			ms, is := msgs[side], idx[side]
			for len(ms) > 0 {
				n, err := mmsg(unix.SYS_SENDMMSG, txs[is[0]].fd, ms[:min(len(ms), 1024)])
				if err != nil {
					txs[is[0]].err++ // a full buffer: that packet is lost, as on a network
					n = 1
				} else {
					for _, j := range is[:n] {
						txs[j].sent++
					}
				}
				ms, is = ms[n:], is[n:]
			}
		}
	}
	return worst
}

// receiveShared is receive for shared sockets: receiver r reads sockets
// r, r+k, ... with recvmmsg, and counts each packet for the stream its
// SSRC names (rxs[ssrc-1]: each stream reaches one socket only, so one
// receiver).
func receiveShared(sockets []party, rxs []rx, r, k int, start time.Time, win [2]uint64, pause time.Duration, stop *atomic.Bool, total *atomic.Uint64, late *[6]uint64) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	for j := r; j < len(sockets); j += k {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(j)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, sockets[j].fd, &ev); err != nil {
			return err
		}
	}
	const batch = 256
	bufs := make([][2048]byte, batch)
	iovs := make([]unix.Iovec, batch)
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
	}
	events := make([]unix.EpollEvent, 16)
	for !stop.Load() {
		n, err := unix.EpollWait(ep, events, 100)
		if err != nil && err != unix.EINTR {
			return err
		}
		var got uint64
		for _, ev := range events[:max(n, 0)] {
			fd := sockets[ev.Fd].fd
			for {
				m, err := mmsg(unix.SYS_RECVMMSG, fd, msgs)
				if err != nil || m == 0 {
					break
				}
				now := uint64(time.Since(start))
				for i := range m {
					buf := bufs[i][:msgs[i].n]
					if len(buf) != pktSize {
						continue
					}
					ssrc := int(buf[8])<<24 | int(buf[9])<<16 | int(buf[10])<<8 | int(buf[11])
					if ssrc < 1 || ssrc > len(rxs) {
						continue
					}
					got++
					rxs[ssrc-1].count(buf, now, win, late)
				}
				if m < batch {
					break
				}
			}
		}
		total.Add(got)
		if n < len(events) && pause > 0 {
			time.Sleep(pause)
		}
	}
	return nil
}

// machineTicks is the busy time of all CPUs (user, nice, system, irq,
// softirq; not idle, iowait or steal) in clock ticks, from /proc/stat.
func machineTicks() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		log.Fatalf("load: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		log.Fatalf("load: /proc/stat: %q", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			log.Fatalf("load: /proc/stat: %v", err)
		}
		busy += v
	}
	return busy
}

// teardown deletes the calls (best effort: the relay is stopped next).
func teardown(cl *rtpengine.Client, n int, runID string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				cl.Delete(ctx, runID+"-"+strconv.Itoa(i))
				cancel()
			}
		}()
	}
	wg.Wait()
}

// send paces the sockets s, s+k, s+2k, ... (k senders): socket j sends
// in 1 ms slot (j/k)%20 of each 20 ms period. It returns the worst lag
// behind the schedule: a driver that keeps up lags well under 1 ms.
func send(txs []tx, s, k int, start time.Time, stop *atomic.Bool) (worst time.Duration) {
	var bySlot [slots][]int
	for j := s; j < len(txs); j += k {
		bySlot[(j/k)%slots] = append(bySlot[(j/k)%slots], j)
	}
	pkt := make([]byte, pktSize)
	for i := 12; i < pktSize; i++ {
		pkt[i] = 0xff // PCMU silence
	}
	pkt[0] = 0x80 // V=2, PT 0 (PCMU)
	for tick := 0; !stop.Load(); tick++ {
		due := start.Add(time.Duration(tick) * time.Millisecond)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else {
			worst = max(worst, -d)
		}
		for _, j := range bySlot[tick%slots] {
			t := &txs[j]
			t.seq++
			t.ts += 160
			pkt[2], pkt[3] = byte(t.seq>>8), byte(t.seq)
			pkt[4], pkt[5], pkt[6], pkt[7] = byte(t.ts>>24), byte(t.ts>>16), byte(t.ts>>8), byte(t.ts)
			pkt[8], pkt[9], pkt[10], pkt[11] = byte(t.ssrc>>24), byte(t.ssrc>>16), byte(t.ssrc>>8), byte(t.ssrc)
			now := uint64(time.Since(start))
			for b := range 8 {
				pkt[12+b] = byte(now >> (56 - 8*b))
			}
			if _, err := unix.Write(t.fd, pkt); err != nil {
				t.err++
				continue
			}
			t.sent++
		}
	}
	return worst
}

// receive reads the sockets r, r+k, ... through one epoll set until stop,
// counting packets, reordering and the delay since sending in buckets
// (≥1, 5, 10, 20, 50 ms).
func receive(rxs []rx, r, k int, start time.Time, win [2]uint64, pause time.Duration, stop *atomic.Bool, total *atomic.Uint64, late *[6]uint64) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	for j := r; j < len(rxs); j += k {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(j)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, rxs[j].fd, &ev); err != nil {
			return err
		}
	}
	events := make([]unix.EpollEvent, 1024)
	buf := make([]byte, 2048)
	for !stop.Load() {
		n, err := unix.EpollWait(ep, events, 100)
		if err != nil && err != unix.EINTR {
			return err
		}
		var got uint64
		for _, ev := range events[:max(n, 0)] {
			x := &rxs[ev.Fd]
			for {
				m, err := unix.Read(x.fd, buf)
				if err != nil {
					break
				}
				if m != pktSize {
					x.wrongLen++
					continue
				}
				got++
				x.count(buf, uint64(time.Since(start)), win, late)
			}
		}
		total.Add(got)
		if n < len(events) && pause > 0 {
			time.Sleep(pause)
		}
	}
	return nil
}

// cpuTicks is a process's utime+stime in clock ticks (all its threads).
func cpuTicks(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		log.Fatalf("load: %v", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return ut + st
}

// rssKB is a process's VmRSS in kB.
func rssKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		log.Fatalf("load: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return v
		}
	}
	return 0
}
