package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// udpPeer is a plain UDP socket standing for a SIP peer.
func udpPeer(t testing.TB, host string) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadBuffer(4 << 20) // room for what a test sends before it reads
	return c, unmap(c.LocalAddr().(*net.UDPAddr).AddrPort())
}

// expectDatagrams reads want from c, in order, each from the port of one
// of the listeners in from (per datagram, from[i]).
func expectDatagrams(t *testing.T, c *net.UDPConn, want [][]byte, from []netip.AddrPort) {
	t.Helper()
	buf := make([]byte, maxDatagram)
	_ = c.SetReadDeadline(time.Now().Add(failsafe))
	for i, w := range want {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %.40q (%d bytes), want %.40q (%d bytes)", i, buf[:n], n, w, len(w))
		}
		if src.Port() != from[i].Port() {
			t.Fatalf("datagram %d from %s, want the listener %s", i, src, from[i])
		}
	}
}

// captured is one call of Config.Capture.
type captured struct {
	out           bool
	proto         string
	local, remote netip.AddrPort
	data          string
}

// recorder is a Config.Capture that keeps what it sees.
type recorder struct {
	mu  sync.Mutex
	got []captured
}

func (r *recorder) capture(out bool, proto string, local, remote netip.AddrPort, data []byte) {
	r.mu.Lock()
	r.got = append(r.got, captured{out, proto, local, remote, string(data)})
	r.mu.Unlock()
}

func (r *recorder) calls() []captured {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]captured(nil), r.got...)
}

// TestBatchOneListenerTwoReceivers: datagrams to two peers, interleaved,
// go out with one sendmmsg on Linux and arrive whole and in order at
// each, counted in Stats and shown to Capture one by one, as WriteTo
// would; the caller's buffer is reused at once. Over a dual-stack socket
// the peers are IPv4 and IPv6 ones.
func TestBatchOneListenerTwoReceivers(t *testing.T) {
	type tc struct{ name, listen, peerA, peerB string }
	cases := []tc{{"IPv4", "127.0.0.1", "127.0.0.1", "127.0.0.1"}}
	if len(families(t)) == 2 {
		cases = append(cases, tc{"IPv6", "::1", "::1", "::1"}, tc{"dual-stack", "", "127.0.0.1", "::1"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			m := newManager(t, Config{Capture: rec.capture}, newSink())
			local := listen(t, m, UDP, c.listen)
			a, aAddr := udpPeer(t, c.peerA)
			bb, bAddr := udpPeer(t, c.peerB)
			b := m.NewBatch()
			var wantA, wantB [][]byte
			var wantCapture []captured
			var bytesOut uint64
			buf := make([]byte, 0, 2048) // reused for every WriteTo
			for i := range 20 {
				buf = append(buf[:0], fmt.Sprintf("NOTIFY %d ", i)...)
				buf = append(buf, bytes.Repeat([]byte{byte('a' + i)}, 50*i)...)
				to := aAddr
				if i%2 == 1 {
					to = bAddr
				}
				if err := b.WriteTo(UDP, local, to, buf); err != nil {
					t.Fatal(err)
				}
				d := bytes.Clone(buf)
				if i%2 == 1 {
					wantB = append(wantB, d)
				} else {
					wantA = append(wantA, d)
				}
				wantCapture = append(wantCapture, captured{true, UDP, local, to, string(d)})
				bytesOut += uint64(len(d))
				clear(buf[:cap(buf)]) // the batch must have copied it
			}
			if b.Len() != 20 {
				t.Fatalf("Len %d, want 20", b.Len())
			}
			if s := m.Stats().UDP; s.PacketsOut != 0 {
				t.Fatalf("%d datagrams counted before Flush", s.PacketsOut)
			}
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.Len() != 0 {
				t.Fatalf("Len %d after Flush", b.Len())
			}
			if runtime.GOOS == "linux" && b.calls != 1 {
				t.Errorf("%d sendmmsg calls for one listener, want 1", b.calls)
			}
			expectDatagrams(t, a, wantA, repeat(local, len(wantA)))
			expectDatagrams(t, bb, wantB, repeat(local, len(wantB)))
			if s := m.Stats().UDP; s.PacketsOut != 20 || s.BytesOut != bytesOut || s.WriteErrors != 0 {
				t.Errorf("stats %+v, want 20 datagrams, %d bytes out", s, bytesOut)
			}
			got := rec.calls()
			if len(got) != len(wantCapture) {
				t.Fatalf("Capture saw %d messages, want %d", len(got), len(wantCapture))
			}
			for i := range got {
				if got[i] != wantCapture[i] {
					t.Fatalf("capture %d: %+.60v, want %+.60v", i, got[i], wantCapture[i])
				}
			}
		})
	}
}

func repeat(a netip.AddrPort, n int) []netip.AddrPort {
	s := make([]netip.AddrPort, n)
	for i := range s {
		s[i] = a
	}
	return s
}

// TestBatchTwoListeners: each datagram leaves from the socket its local
// address names (or, with none, the first that reaches the peer), one
// sendmmsg per socket, each socket's datagrams in order.
func TestBatchTwoListeners(t *testing.T) {
	m := newManager(t, Config{}, newSink())
	l1 := listen(t, m, UDP, "127.0.0.1")
	l2 := listen(t, m, UDP, "127.0.0.1")
	peer, to := udpPeer(t, "127.0.0.1")
	b := m.NewBatch()
	var want1, want2 [][]byte
	for i := range 12 {
		d := []byte(fmt.Sprintf("message %d", i))
		local := netip.AddrPort{} // the first listener
		if i%3 == 1 {
			local = l2
		}
		if err := b.WriteTo(UDP, local, to, d); err != nil {
			t.Fatal(err)
		}
		if local == l2 {
			want2 = append(want2, d)
		} else {
			want1 = append(want1, d)
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && b.calls != 2 {
		t.Errorf("%d sendmmsg calls for two listeners, want 2", b.calls)
	}
	// Read all, then split by source: the two sockets' datagrams may
	// interleave in any way, each socket's must keep their order.
	buf := make([]byte, 2048)
	var got1, got2 [][]byte
	_ = peer.SetReadDeadline(time.Now().Add(failsafe))
	for range len(want1) + len(want2) {
		n, src, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		switch unmap(src) {
		case l1:
			got1 = append(got1, bytes.Clone(buf[:n]))
		case l2:
			got2 = append(got2, bytes.Clone(buf[:n]))
		default:
			t.Fatalf("%q from %s, neither listener", buf[:n], src)
		}
	}
	for _, c := range []struct {
		l         netip.AddrPort
		got, want [][]byte
	}{{l1, got1, want1}, {l2, got2, want2}} {
		if fmt.Sprintf("%q", c.got) != fmt.Sprintf("%q", c.want) {
			t.Errorf("from %s: got %q, want %q", c.l, c.got, c.want)
		}
	}
}

// TestBatchSendsAroundOddDatagrams: a datagram the raw sender cannot take
// (a zone: the net package writes it) goes between two sendmmsg runs,
// keeping the order; one that cannot be sent at all (IPv6 from an IPv4
// socket) fails alone, counted as WriteTo counts it, and the rest go.
func TestBatchSendsAroundOddDatagrams(t *testing.T) {
	t.Run("zone", func(t *testing.T) {
		if len(families(t)) < 2 {
			t.Skip("no IPv6 loopback")
		}
		lo := loopbackName(t)
		m := newManager(t, Config{}, newSink())
		local := listen(t, m, UDP, "::1")
		peer, to := udpPeer(t, "::1")
		zoned := netip.AddrPortFrom(to.Addr().WithZone(lo), to.Port())
		b := m.NewBatch()
		var want [][]byte
		for i, dst := range []netip.AddrPort{to, to, zoned, to} {
			d := []byte(fmt.Sprintf("message %d to %s", i, dst))
			if err := b.WriteTo(UDP, local, dst, d); err != nil {
				t.Fatal(err)
			}
			want = append(want, d)
		}
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS == "linux" && b.calls != 2 {
			t.Errorf("%d sendmmsg calls, want 2 (before and after the zoned datagram)", b.calls)
		}
		expectDatagrams(t, peer, want, repeat(local, len(want)))
		if s := m.Stats().UDP; s.PacketsOut != 4 {
			t.Errorf("stats %+v, want 4 datagrams out", s)
		}
	})
	t.Run("unreachable family", func(t *testing.T) {
		m := newManager(t, Config{}, newSink())
		local := listen(t, m, UDP, "127.0.0.1")
		peer, to := udpPeer(t, "127.0.0.1")
		v6 := netip.MustParseAddrPort("[::1]:5060")
		want := m.WriteTo(UDP, local, v6, []byte("x"))
		if want == nil {
			t.Fatal("WriteTo sent IPv6 from an IPv4 socket")
		}
		b := m.NewBatch()
		for _, d := range []string{"first", "x", "last"} {
			dst := to
			if d == "x" {
				dst = v6
			}
			if err := b.WriteTo(UDP, local, dst, []byte(d)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Flush(); err == nil || err.Error() != want.Error() {
			t.Fatalf("Flush: %v, want %v", err, want)
		}
		expectDatagrams(t, peer, [][]byte{[]byte("first"), []byte("last")}, repeat(local, 2))
		if s := m.Stats().UDP; s.PacketsOut != 2 || s.WriteErrors != 2 {
			t.Errorf("stats %+v, want 2 datagrams out, 2 write errors (WriteTo's and the batch's)", s)
		}
	})
}

// tooBig4 is one byte over the largest UDP payload an IPv4 datagram can
// carry (65535 less the IP and UDP headers): the kernel refuses it with
// EMSGSIZE, and it still fits a batch with a few bytes of others.
const tooBig4 = 65535 - 20 - 8 + 1

// refusedBatch queues msgs from local to to, in order, with a datagram
// too big to send where msgs holds nil, and returns the error WriteTo
// gives that datagram.
func refusedBatch(t *testing.T, m *Manager, b *Batch, local, to netip.AddrPort, msgs [][]byte) error {
	t.Helper()
	big := bytes.Repeat([]byte("x"), tooBig4)
	refused := m.WriteTo(UDP, local, to, big)
	if !errors.Is(refused, syscall.EMSGSIZE) {
		t.Fatalf("WriteTo of %d bytes: %v, want EMSGSIZE", tooBig4, refused)
	}
	for _, d := range msgs {
		if d == nil {
			d = big
		}
		if err := b.WriteTo(UDP, local, to, d); err != nil {
			t.Fatal(err)
		}
	}
	if b.Len() != len(msgs) {
		t.Fatalf("%d datagrams queued, want %d in one batch", b.Len(), len(msgs))
	}
	return refused
}

// TestBatchRefusedDatagram: a datagram the kernel refuses (too big for
// UDP over IPv4) fails alone, counted as WriteTo counts it, whether it is
// the first of a sendmmsg (the call fails) or a later one (the kernel
// takes those before it and reports no error); every other datagram
// arrives in order, and those after it go in one more sendmmsg, not one
// write each.
func TestBatchRefusedDatagram(t *testing.T) {
	tests := []struct {
		name  string
		msgs  [][]byte // nil: the refused datagram
		sent  [][]byte
		calls int // sendmmsg: up to the refused datagram, then the rest
	}{
		{"first", [][]byte{nil, []byte("after 1"), []byte("after 2"), []byte("after 3")},
			[][]byte{[]byte("after 1"), []byte("after 2"), []byte("after 3")}, 2},
		{"in the middle", [][]byte{[]byte("1"), []byte("2"), nil, []byte("3"), []byte("4")},
			[][]byte{[]byte("1"), []byte("2"), []byte("3"), []byte("4")}, 2},
		{"last", [][]byte{[]byte("1"), []byte("2"), nil},
			[][]byte{[]byte("1"), []byte("2")}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			m := newManager(t, Config{Capture: rec.capture}, newSink())
			local := listen(t, m, UDP, "127.0.0.1")
			peer, to := udpPeer(t, "127.0.0.1")
			b := m.NewBatch()
			refusedBatch(t, m, b, local, to, tc.msgs)
			err := b.Flush()
			if !errors.Is(err, syscall.EMSGSIZE) {
				t.Fatalf("Flush: %v, want EMSGSIZE", err)
			}
			if want := to.String(); !strings.Contains(err.Error(), want) {
				t.Errorf("Flush: %v, does not name the destination %s", err, want)
			}
			if b.Len() != 0 {
				t.Errorf("Len %d after Flush", b.Len())
			}
			expectDatagrams(t, peer, tc.sent, repeat(local, len(tc.sent)))
			if s := m.Stats().UDP; s.PacketsOut != uint64(len(tc.sent)) || s.WriteErrors != 2 {
				t.Errorf("stats %+v, want %d datagrams out, 2 write errors (WriteTo's and the batch's)", s, len(tc.sent))
			}
			if got := len(rec.calls()); got != len(tc.sent) {
				t.Errorf("Capture saw %d datagrams, want the %d sent", got, len(tc.sent))
			}
			if runtime.GOOS == "linux" && b.calls != tc.calls {
				t.Errorf("%d sendmmsg calls, want %d", b.calls, tc.calls)
			}
		})
	}
}

// TestBatchSocketClosesDuringFlush: when the Manager closes while a
// batch is being sent (here from Capture, right after the first datagram
// went), what was sent is counted as sent, and every datagram after it
// fails with the closed socket's error and is counted, none tried on a
// descriptor that may have been reused.
func TestBatchSocketClosesDuringFlush(t *testing.T) {
	var m *Manager
	var closeErr error
	closes := 0
	capture := func(out bool, proto string, local, remote netip.AddrPort, data []byte) {
		if out && closes == 0 {
			closes++
			closeErr = m.Close()
		}
	}
	m = newManager(t, Config{Capture: capture}, newSink())
	local := listen(t, m, UDP, "127.0.0.1")
	peer, to := udpPeer(t, "127.0.0.1")
	b := m.NewBatch()
	// The refused datagram ends the first sendmmsg after "1", so that
	// Close comes between two system calls of one Flush.
	refusedBatch(t, m, b, local, to, [][]byte{[]byte("1"), nil, []byte("2"), []byte("3")})
	err := b.Flush()
	if closes != 1 || closeErr != nil {
		t.Fatalf("Close called %d times from Capture: %v", closes, closeErr)
	}
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Flush: %v, want the closed socket's error", err)
	}
	if b.Len() != 0 {
		t.Errorf("Len %d after Flush", b.Len())
	}
	expectDatagrams(t, peer, [][]byte{[]byte("1")}, repeat(local, 1))
	// 1 by WriteTo's refused datagram, 3 by the batch after Close.
	if s := m.Stats().UDP; s.PacketsOut != 1 || s.WriteErrors != 4 {
		t.Errorf("stats %+v, want 1 datagram out, 4 write errors", s)
	}
	// Nothing else left the closed socket: the next datagram the peer
	// reads is one sent after the Flush, from elsewhere.
	other, _ := udpPeer(t, "127.0.0.1")
	if _, err := other.WriteToUDPAddrPort([]byte("marker"), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, src, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "marker" {
		t.Errorf("after Flush the peer read %q from %s (%v), want only the marker", buf[:n], src, err)
	}
}

// loopbackName returns the loopback interface's name, a zone for ::1.
func loopbackName(t *testing.T) string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return ifi.Name
		}
	}
	t.Skip("no loopback interface")
	return ""
}

// TestBatchFlushesWhenFull: past 64 datagrams, or 64 KiB of copies, WriteTo
// sends what is queued itself; nothing is lost and the order holds.
func TestBatchFlushesWhenFull(t *testing.T) {
	m := newManager(t, Config{}, newSink())
	local := listen(t, m, UDP, "127.0.0.1")
	peer, to := udpPeer(t, "127.0.0.1")
	b := m.NewBatch()
	var unsent [][]byte // queued or sent and not yet read
	byCount, byBytes := 0, 0
	for i := range 150 {
		size := 100 // 64 of these fill a batch
		if i >= 100 {
			size = 9000 // 7 of these pass 64 KiB
		}
		d := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		copy(d, fmt.Sprint(i, " "))
		before := b.Len()
		if err := b.WriteTo(UDP, local, to, d); err != nil {
			t.Fatal(err)
		}
		unsent = append(unsent, d)
		if after := b.Len(); after != before+1 {
			// WriteTo flushed: read what went, before the peer's buffer fills.
			sent := before + 1 - after
			if after == 0 {
				byCount++
				if sent != maxBatchDatagrams {
					t.Fatalf("flushed %d datagrams at once, want %d", sent, maxBatchDatagrams)
				}
			} else {
				byBytes++
			}
			expectDatagrams(t, peer, unsent[:sent], repeat(local, sent))
			unsent = unsent[sent:]
		}
		if b.Len() > maxBatchDatagrams {
			t.Fatalf("%d datagrams queued", b.Len())
		}
	}
	if byCount == 0 || byBytes == 0 {
		t.Fatalf("flushes when full: %d by count, %d by bytes; want both", byCount, byBytes)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	expectDatagrams(t, peer, unsent, repeat(local, len(unsent)))
	if s := m.Stats().UDP; s.PacketsOut != 150 || s.WriteErrors != 0 {
		t.Errorf("stats %+v, want 150 datagrams out", s)
	}
}

// TestBatchPassesStreamsThrough: a TCP message is written before WriteTo
// returns, nothing is queued, and an unknown protocol fails at once as
// Manager.WriteTo fails.
func TestBatchPassesStreamsThrough(t *testing.T) {
	m := newManager(t, Config{}, newSink())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b := m.NewBatch()
	msg := []byte(invite10)
	if err := b.WriteTo(TCP, netip.AddrPort{}, netip.MustParseAddrPort(ln.Addr().String()), msg); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 0 {
		t.Fatalf("Len %d: a TCP message was queued", b.Len())
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	_ = peer.SetReadDeadline(time.Now().Add(failsafe))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != invite10 {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if s := m.Stats().TCP; s.PacketsOut != 1 {
		t.Errorf("TCP stats %+v, want 1 message out", s)
	}

	to := netip.MustParseAddrPort("127.0.0.1:5060")
	want := m.WriteTo("sctp", netip.AddrPort{}, to, msg)
	if err := b.WriteTo("sctp", netip.AddrPort{}, to, msg); err == nil || want == nil || err.Error() != want.Error() {
		t.Fatalf("sctp: %v, want %v", err, want)
	}
}

// TestBatchErrorsAtOnce: what WriteTo can tell without sending comes back
// from WriteTo, as Manager.WriteTo returns and counts it; nothing queued.
func TestBatchErrorsAtOnce(t *testing.T) {
	m := newManager(t, Config{}, newSink())
	listen(t, m, UDP, "127.0.0.1")
	b := m.NewBatch()
	tests := []struct {
		name          string
		local, remote netip.AddrPort
		is            error
	}{
		{"invalid remote", netip.AddrPort{}, netip.AddrPort{}, nil},
		{"no IPv6 socket", netip.AddrPort{}, netip.MustParseAddrPort("[::1]:5060"), ErrNoListener},
		{"no socket on that local address", netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:5060"), ErrNoListener},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := m.Stats().UDP.WriteErrors
			want := m.WriteTo(UDP, tc.local, tc.remote, []byte("x"))
			mid := m.Stats().UDP.WriteErrors
			err := b.WriteTo(UDP, tc.local, tc.remote, []byte("x"))
			if err == nil || want == nil || err.Error() != want.Error() {
				t.Fatalf("error %v, want %v", err, want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if after := m.Stats().UDP.WriteErrors; after-mid != mid-before {
				t.Errorf("write errors counted: %d by the batch, %d by WriteTo", after-mid, mid-before)
			}
			if b.Len() != 0 {
				t.Errorf("Len %d after a failed WriteTo", b.Len())
			}
		})
	}
	if err := b.Flush(); err != nil {
		t.Errorf("Flush of an empty batch: %v", err)
	}
}

// TestBatchAfterClose: a batch outliving its Manager fails cleanly: Flush
// of what was queued and later WriteTos return ErrClosed, and the batch
// empties.
func TestBatchAfterClose(t *testing.T) {
	m := New(Config{}, newSink())
	local := listen(t, m, UDP, "127.0.0.1")
	_, to := udpPeer(t, "127.0.0.1")
	b := m.NewBatch()
	for range 3 {
		if err := b.WriteTo(UDP, local, to, []byte(invite10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v, want ErrClosed", err)
	}
	if b.Len() != 0 {
		t.Errorf("Len %d after Flush", b.Len())
	}
	if err := b.WriteTo(UDP, local, to, []byte(invite10)); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteTo after Close: %v, want ErrClosed", err)
	}
	if err := b.Flush(); err != nil {
		t.Errorf("Flush of an empty batch: %v", err)
	}
	if s := m.Stats().UDP; s.PacketsOut != 0 {
		t.Errorf("%d datagrams counted as sent after Close", s.PacketsOut)
	}
}

// TestBatchReusesBuffers: once a batch has held a burst, the same burst
// again allocates nothing, whatever its size (the point of batching is to
// be cheaper than the writes it replaces).
func TestBatchReusesBuffers(t *testing.T) {
	m := newManager(t, Config{}, newSink())
	local := listen(t, m, UDP, "127.0.0.1")
	_, to := udpPeer(t, "127.0.0.1") // never read: the kernel drops the overflow
	b := m.NewBatch()
	msg := make([]byte, 700)
	burst := func() {
		for range 10 {
			if err := b.WriteTo(UDP, local, to, msg); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	burst()
	if n := testing.AllocsPerRun(20, burst); n != 0 {
		t.Errorf("%v allocations per burst of 10", n)
	}
}

// BenchmarkUDPBatch10 sends the 10 datagrams of one presence change to a
// loopback peer: 10 Manager.WriteTo calls (a sendto each) against one
// Batch (one sendmmsg). The peer drains its socket in a goroutine, so
// every datagram is delivered, the receiver's wake-ups included.
func BenchmarkUDPBatch10(b *testing.B) {
	m := New(Config{}, HandlerFunc(func(*Packet) {}))
	defer m.Close()
	a, err := m.Listen(UDP, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	local := addrPortOf(a)
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = peer.SetReadBuffer(4 << 20)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, maxDatagram)
		for {
			if _, _, err := peer.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	defer func() { peer.Close(); <-drained }()
	msg := bytes.Repeat([]byte("x"), 700)

	b.Run("WriteTo", func(b *testing.B) {
		b.SetBytes(10 * int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			for range 10 {
				if err := m.WriteTo(UDP, local, to, msg); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("Batch", func(b *testing.B) {
		bt := m.NewBatch()
		b.SetBytes(10 * int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			for range 10 {
				if err := bt.WriteTo(UDP, local, to, msg); err != nil {
					b.Fatal(err)
				}
			}
			if err := bt.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
