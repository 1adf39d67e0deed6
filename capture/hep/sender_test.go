package hep

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// collector is a UDP socket standing in for Homer.
func collector(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads one HEP packet; the deadline only keeps a broken test
// from hanging.
func receive(t *testing.T, c *net.UDPConn) Packet {
	t.Helper()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("collector: %v", err)
	}
	p, err := Decode(buf[:n])
	if err != nil {
		t.Fatalf("collector: %v", err)
	}
	return p
}

func started(t testing.TB, cfg Config) *Sender {
	t.Helper()
	s, err := NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSenderDirections(t *testing.T) {
	col := collector(t)
	s := started(t, Config{Addr: col.LocalAddr().String(), NodeID: 2001, Password: "secret"})
	defer s.Close()
	local := netip.MustParseAddrPort("192.0.2.10:5060")
	remote := netip.MustParseAddrPort("198.51.100.1:40000")
	before := time.Now().Truncate(time.Microsecond)
	s.Capture(false, "UDP", local, remote, []byte("OPTIONS in"))
	s.Capture(true, "TLS", local, remote, []byte("SIP/2.0 200 out"))

	in := receive(t, col)
	if in.Src != remote || in.Dst != local || in.IPProtocol != IPProtoUDP || string(in.Payload) != "OPTIONS in" {
		t.Errorf("received message captured as %+v", in)
	}
	out := receive(t, col)
	if out.Src != local || out.Dst != remote || out.IPProtocol != IPProtoTCP || string(out.Payload) != "SIP/2.0 200 out" {
		t.Errorf("sent message captured as %+v", out)
	}
	for _, p := range []Packet{in, out} {
		if p.NodeID != 2001 || p.Password != "secret" || p.ProtoType != ProtoSIP {
			t.Errorf("node %d password %q proto type %d", p.NodeID, p.Password, p.ProtoType)
		}
		if p.Time.Before(before) || p.Time.After(time.Now()) {
			t.Errorf("timestamp %v not between %v and now", p.Time, before)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Sent != 2 || st.QueueFull != 0 || st.SendErrors != 0 {
		t.Errorf("Stats = %+v, want 2 sent", st)
	}
}

// TestSenderQueueFull captures before Start, so the queue
// fills for certain: Capture must return at once and count each drop,
// and what was queued still goes out in order.
func TestSenderQueueFull(t *testing.T) {
	col := collector(t)
	s, err := NewSender(Config{Addr: col.LocalAddr().String(), Queue: 3})
	if err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddrPort("127.0.0.1:5060")
	remote := netip.MustParseAddrPort("127.0.0.1:5070")
	for i := range 10 {
		s.Capture(false, "UDP", local, remote, []byte{'0' + byte(i)})
	}
	if st := s.Stats(); st.QueueFull != 7 || st.Sent != 0 {
		t.Fatalf("Stats = %+v, want 7 dropped for a full queue", st)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if p := receive(t, col); string(p.Payload) != string(rune('0'+i)) {
			t.Errorf("packet %d carries %q", i, p.Payload)
		}
	}
	// The slots came back: capturing works again.
	s.Capture(true, "TCP", local, remote, []byte("again"))
	if p := receive(t, col); string(p.Payload) != "again" {
		t.Errorf("after the drops: %q", p.Payload)
	}
	s.Close()
	if st := s.Stats(); st.Sent != 4 || st.QueueFull != 7 {
		t.Errorf("Stats = %+v, want 4 sent, 7 dropped", st)
	}
}

func TestSenderCountsUnsendable(t *testing.T) {
	col := collector(t)
	s := started(t, Config{Addr: col.LocalAddr().String()})
	defer s.Close()
	local := netip.MustParseAddrPort("127.0.0.1:5060")
	s.Capture(false, "TCP", local, netip.MustParseAddrPort("127.0.0.1:5070"), make([]byte, 70000))
	s.Capture(false, "TCP", local, netip.MustParseAddrPort("[::1]:5070"), []byte("mixed families"))
	if st := s.Stats(); st.SendErrors != 2 {
		t.Errorf("Stats = %+v, want 2 send errors", st)
	}
}

func TestSenderCloseSendsQueued(t *testing.T) {
	col := collector(t)
	s, err := NewSender(Config{Addr: col.LocalAddr().String(), Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddrPort("127.0.0.1:5060")
	for range 5 {
		s.Capture(false, "UDP", local, local, []byte("x"))
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Sent != 5 {
		t.Errorf("Stats after Close = %+v, want the 5 queued sent", st)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewSenderRefuses(t *testing.T) {
	for _, cfg := range []Config{{Addr: "127.0.0.1:9060", Queue: -1}, {Addr: "no port"}} {
		if _, err := NewSender(cfg); err == nil {
			t.Errorf("NewSender(%+v) succeeded", cfg)
		}
	}
}

func TestSenderLifecycle(t *testing.T) {
	col := collector(t)
	s, err := NewSender(Config{Addr: col.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
	s = started(t, Config{Addr: col.LocalAddr().String()})
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	s.Close()
	// Capture after Close neither blocks nor panics; it fills the queue
	// and then counts.
	local := netip.MustParseAddrPort("127.0.0.1:5060")
	for range DefaultQueue + 1 {
		s.Capture(false, "UDP", local, local, []byte("late"))
	}
	if st := s.Stats(); st.QueueFull != 1 {
		t.Errorf("Stats = %+v, want 1 dropped", st)
	}
}

// BenchmarkCapture is the cost on the capturing goroutine. queued: take
// a slot, encode into it, queue it (the sending goroutine's part, a
// channel receive and send per message, done here in the loop instead,
// without the system call); queue_full: a drop; to_collector: with the
// real sending goroutine writing to a socket, which under this load
// cannot keep up, so most messages are dropped (dropped/op).
func BenchmarkCapture(b *testing.B) {
	local := netip.MustParseAddrPort("127.0.0.1:5060")
	remote := netip.MustParseAddrPort("127.0.0.1:5070")
	msg := []byte(invite)
	b.Run("queued", func(b *testing.B) {
		s, err := NewSender(Config{Addr: "127.0.0.1:9", NodeID: 1, Queue: 64})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			s.Capture(false, "UDP", local, remote, msg)
			s.free <- <-s.ready
		}
		if st := s.Stats(); st.QueueFull != 0 || st.SendErrors != 0 {
			b.Fatalf("Stats = %+v", st)
		}
	})
	b.Run("queue_full", func(b *testing.B) {
		s, err := NewSender(Config{Addr: "127.0.0.1:9", Queue: 1})
		if err != nil {
			b.Fatal(err)
		}
		s.Capture(false, "UDP", local, remote, msg)
		b.ReportAllocs()
		for b.Loop() {
			s.Capture(false, "UDP", local, remote, msg)
		}
	})
	b.Run("to_collector", func(b *testing.B) {
		col := collector(b)
		go func() {
			buf := make([]byte, 65536)
			for {
				if _, err := col.Read(buf); err != nil {
					return
				}
			}
		}()
		s := started(b, Config{Addr: col.LocalAddr().String(), NodeID: 1})
		defer s.Close()
		b.ReportAllocs()
		for b.Loop() {
			s.Capture(false, "UDP", local, remote, msg)
		}
		b.StopTimer()
		b.ReportMetric(float64(s.Stats().QueueFull)/float64(b.N), "dropped/op")
	})
}

func BenchmarkAppend(b *testing.B) {
	p := Packet{IPProtocol: IPProtoUDP, Src: netip.MustParseAddrPort("192.0.2.1:5060"),
		Dst: netip.MustParseAddrPort("192.0.2.2:5060"), Time: time.Now(), Payload: []byte(invite)}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = p.Append(buf[:0])
	}
}
