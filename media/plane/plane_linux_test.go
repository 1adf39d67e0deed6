//go:build linux

package plane

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/media"
)

// rtcpOf is the RTCP address of a leg.
func rtcpOf(l *Leg) netip.AddrPort {
	return netip.AddrPortFrom(l.Addr().Addr(), l.Addr().Port()+1)
}

// call is two linked legs and their parties.
type call struct {
	a, b   *Leg
	pa, pb *party
}

func newCall(t *testing.T, p *Plane, la, lb netip.Addr, muxA, muxB bool) *call {
	t.Helper()
	c := &call{a: allocate(t, p, la), b: allocate(t, p, lb), pa: newParty(t, la), pb: newParty(t, lb)}
	c.pa.signal(c.a, muxA)
	c.pb.signal(c.b, muxB)
	Link(c.a, c.b)
	return c
}

func TestForwardBothWays(t *testing.T) { bothPaths(t, testForwardBothWays) }

func testForwardBothWays(t *testing.T, cfg Config) {
	p, reg := newPlane(t, cfg)
	c := newCall(t, p, lo4, lo4, false, false)
	if c.a.Addr().Port()%2 != 0 || c.a.Addr().Addr() != lo4 {
		t.Fatalf("leg address %v: want an even port on 127.0.0.1", c.a.Addr())
	}

	// RFC 3550: RTP to the leg's port comes out of the partner's port.
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(1))
	expect(t, c.pb.rtp, rtpPacket(1), c.b.Addr())
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(2))
	expect(t, c.pa.rtp, rtpPacket(2), c.a.Addr())
	// RTCP to port+1 comes out of the partner's port+1 to the party's
	// RTCP address.
	rr := receiverReport(t, 0, 0)
	send(t, c.pa.rtcp, rtcpOf(c.a), rr)
	expect(t, c.pb.rtcp, rr, rtcpOf(c.b))
	send(t, c.pb.rtcp, rtcpOf(c.b), rr)
	expect(t, c.pa.rtcp, rr, rtcpOf(c.a))

	waitFor(t, "stats", func() bool { return c.a.Stats().Packets == 2 && c.b.Stats().Packets == 2 })
	st := c.a.Stats()
	if want := uint64(len(rtpPacket(1)) + len(rr)); st.Bytes != want || st.Dropped != 0 || st.Last.IsZero() {
		t.Errorf("a: %+v, want %d bytes, nothing dropped, a last packet", st, want)
	}
	if got := metric(t, reg, "hlas_media_packets_forwarded_total", "", ""); got != 4 {
		t.Errorf("packets_forwarded_total %v, want 4", got)
	}
	if got := metric(t, reg, "hlas_media_bytes_forwarded_total", "", ""); got != float64(2*(len(rtpPacket(1))+len(rr))) {
		t.Errorf("bytes_forwarded_total %v", got)
	}
	if got := metric(t, reg, "hlas_media_ports_in_use", "", ""); got != 4 {
		t.Errorf("ports_in_use %v, want 4", got)
	}
}

// RFC 5761: a muxing party sends and receives RTCP on its RTP port; the
// other side keeps port+1.
func TestRTCPMuxOneSide(t *testing.T) { bothPaths(t, testRTCPMuxOneSide) }

func testRTCPMuxOneSide(t *testing.T, cfg Config) {
	p, _ := newPlane(t, cfg)
	c := newCall(t, p, lo4, lo4, true, false)

	rr := receiverReport(t, 1, 2)
	// From the muxing party, on the RTP port: RTCP goes to the other
	// party's RTCP port, RTP to its RTP port.
	send(t, c.pa.rtp, c.a.Addr(), rr)
	expect(t, c.pb.rtcp, rr, rtcpOf(c.b))
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(7))
	expect(t, c.pb.rtp, rtpPacket(7), c.b.Addr())
	// To the muxing party: RTCP from port+1 lands on its RTP port, from
	// the leg's RTP port.
	send(t, c.pb.rtcp, rtcpOf(c.b), rr)
	expect(t, c.pa.rtp, rr, c.a.Addr())
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(8))
	expect(t, c.pa.rtp, rtpPacket(8), c.a.Addr())
}

// Legs of one link on IPv4 and IPv6 bridge the families.
func TestIPv4IPv6Bridging(t *testing.T) {
	p, _ := newPlane(t, Config{})
	c := newCall(t, p, lo4, lo6, false, false)
	if !c.b.Addr().Addr().Is6() {
		t.Fatalf("leg b on %v", c.b.Addr())
	}
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(1))
	expect(t, c.pb.rtp, rtpPacket(1), c.b.Addr())
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(2))
	expect(t, c.pa.rtp, rtpPacket(2), c.a.Addr())
	rr := receiverReport(t, 0, 0)
	send(t, c.pb.rtcp, rtcpOf(c.b), rr)
	expect(t, c.pa.rtcp, rr, rtcpOf(c.a))
}

// A leg bound on the unspecified IPv6 address is dual-stack: it faces an
// IPv4 party too.
func TestDualStackLeg(t *testing.T) {
	p, _ := newPlane(t, Config{})
	a := allocate(t, p, netip.IPv6Unspecified())
	b := allocate(t, p, lo4)
	pa, pb := newParty(t, lo4), newParty(t, lo4)
	pa.signal(a, false)
	pb.signal(b, false)
	Link(a, b)
	aAddr := netip.AddrPortFrom(lo4, a.Addr().Port())
	send(t, pb.rtp, b.Addr(), rtpPacket(1))
	expect(t, pa.rtp, rtpPacket(1), aAddr)
	send(t, pa.rtp, aAddr, rtpPacket(2))
	expect(t, pb.rtp, rtpPacket(2), b.Addr())
}

// RFC 7362 §4: the party's packets come from a NAT's address, not the one
// in its SDP; the relay answers where they come from.
func TestLatchToNATSource(t *testing.T) { bothPaths(t, testLatchToNATSource) }

func testLatchToNATSource(t *testing.T, cfg Config) {
	p, _ := newPlane(t, cfg)
	c := newCall(t, p, lo4, lo4, false, false)
	nat := newParty(t, lo4) // the NAT's mappings of pa's sockets

	// Before pa sent anything, b's traffic goes to the signalled address.
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(1))
	expect(t, c.pa.rtp, rtpPacket(1), c.a.Addr())

	send(t, nat.rtp, c.a.Addr(), rtpPacket(2))
	expect(t, c.pb.rtp, rtpPacket(2), c.b.Addr())
	send(t, nat.rtcp, rtcpOf(c.a), receiverReport(t, 0, 0))
	expect(t, c.pb.rtcp, receiverReport(t, 0, 0), rtcpOf(c.b))

	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(3))
	expect(t, nat.rtp, rtpPacket(3), c.a.Addr())
	send(t, c.pb.rtcp, rtcpOf(c.b), receiverReport(t, 0, 0))
	expect(t, nat.rtcp, receiverReport(t, 0, 0), rtcpOf(c.a))
}

// RFC 7362 §3: once latched and past the window, another source is a
// stranger: dropped and counted; a new SetPeer (re-INVITE) reopens the
// window. pa is behind a NAT: its SDP names pa, its packets come from nat.
func TestStrangerAndRelatch(t *testing.T) { bothPaths(t, testStrangerAndRelatch) }

func testStrangerAndRelatch(t *testing.T, cfg Config) {
	p, reg := newPlane(t, cfg)
	c := newCall(t, p, lo4, lo4, false, false)
	nat, nat2, stranger := newParty(t, lo4), newParty(t, lo4), newParty(t, lo4)

	send(t, nat.rtp, c.a.Addr(), rtpPacket(1))
	expect(t, c.pb.rtp, rtpPacket(1), c.b.Addr())
	send(t, nat.rtcp, rtcpOf(c.a), receiverReport(t, 0, 0))
	expect(t, c.pb.rtcp, receiverReport(t, 0, 0), rtcpOf(c.b))
	p.skew.Add(int64(2 * DefaultLatchWindow)) // the window closes

	send(t, stranger.rtp, c.a.Addr(), rtpPacket(66))
	send(t, stranger.rtcp, rtcpOf(c.a), receiverReport(t, 0, 0))
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(67)) // the private address is no one's to trust
	waitFor(t, "the stranger's packets dropped", func() bool { return c.a.Stats().Dropped == 3 })
	// The party still gets through, and is the next packet pb sees.
	send(t, nat.rtp, c.a.Addr(), rtpPacket(2))
	expect(t, c.pb.rtp, rtpPacket(2), c.b.Addr())
	if got := metric(t, reg, "hlas_media_packets_dropped_total", "reason", "stranger"); got != 3 {
		t.Errorf("dropped{stranger} %v, want 3", got)
	}
	// pb's traffic still goes to the party, not to the stranger.
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(3))
	expect(t, nat.rtp, rtpPacket(3), c.a.Addr())

	// Re-INVITE with the same SDP: the window reopens, and the party,
	// now behind a new NAT mapping, is followed.
	c.pa.signal(c.a, false)
	send(t, nat2.rtp, c.a.Addr(), rtpPacket(4))
	expect(t, c.pb.rtp, rtpPacket(4), c.b.Addr())
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(5))
	expect(t, nat2.rtp, rtpPacket(5), c.a.Addr())
	if got := c.a.Stats().Dropped; got != 3 {
		t.Errorf("dropped %d, want still 3", got)
	}
}

// A party that sends from its signalled address keeps the latch even
// inside the window; a re-INVITE naming a new address moves it at once.
func TestLatchStaysOnSignalled(t *testing.T) { bothPaths(t, testLatchStaysOnSignalled) }

func testLatchStaysOnSignalled(t *testing.T, cfg Config) {
	p, _ := newPlane(t, cfg)
	c := newCall(t, p, lo4, lo4, false, false)
	stranger := newParty(t, lo4)
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(1))
	expect(t, c.pb.rtp, rtpPacket(1), c.b.Addr())
	send(t, stranger.rtp, c.a.Addr(), rtpPacket(66))
	waitFor(t, "the stranger dropped", func() bool { return c.a.Stats().Dropped == 1 })

	moved := newParty(t, lo4)
	moved.signal(c.a, false)
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(2))
	expect(t, moved.rtp, rtpPacket(2), c.a.Addr())
}

// A held party (c=0.0.0.0) gets nothing until it sends.
func TestHold(t *testing.T) { bothPaths(t, testHold) }

func testHold(t *testing.T, cfg Config) {
	p, reg := newPlane(t, cfg)
	c := newCall(t, p, lo4, lo4, false, false)
	port := addrOf(c.pb.rtp).Port()
	c.b.SetPeer(netip.AddrPortFrom(netip.IPv4Unspecified(), port), netip.AddrPort{}, false)

	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(1))
	send(t, c.pa.rtcp, rtcpOf(c.a), receiverReport(t, 0, 0))
	waitFor(t, "drops", func() bool { return c.a.Stats().Dropped == 2 })
	if got := metric(t, reg, "hlas_media_packets_dropped_total", "reason", "no_destination"); got != 2 {
		t.Errorf("dropped{no_destination} %v, want 2", got)
	}
	// The held party sends: now it has a destination, its own source.
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(2))
	expect(t, c.pa.rtp, rtpPacket(2), c.a.Addr())
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(3))
	expect(t, c.pb.rtp, rtpPacket(3), c.b.Addr())
	// The counters are added after the batch is sent, so the receipt
	// above can come first.
	waitFor(t, "a's counters", func() bool { return c.a.Stats().Packets == 1 })
	if st := c.a.Stats(); st.Packets != 1 || st.Dropped != 2 {
		t.Errorf("a: %+v, want 1 forwarded, 2 dropped", st)
	}
}

// A leg without a partner drops what it gets.
func TestUnlinked(t *testing.T) { bothPaths(t, testUnlinked) }

func testUnlinked(t *testing.T, cfg Config) {
	p, reg := newPlane(t, cfg)
	c := newCall(t, p, lo4, lo4, false, false)
	Link(c.b, nil)
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(1))
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(2))
	waitFor(t, "drops", func() bool { return c.a.Stats().Dropped == 1 && c.b.Stats().Dropped == 1 })
	if got := metric(t, reg, "hlas_media_packets_dropped_total", "reason", "no_partner"); got != 2 {
		t.Errorf("dropped{no_partner} %v, want 2", got)
	}
	// Relinking one of them to a third leg leaves the other alone.
	d := allocate(t, p, lo4)
	pd := newParty(t, lo4)
	pd.signal(d, false)
	Link(c.a, d)
	Link(c.a, c.b) // and back: d is unlinked
	send(t, pd.rtp, d.Addr(), rtpPacket(3))
	waitFor(t, "drop at d", func() bool { return d.Stats().Dropped == 1 })
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(4))
	expect(t, c.pb.rtp, rtpPacket(4), c.b.Addr())
}

// RTCP reports from a party (SR or RR) show as its leg's Lost and
// JitterMS.
func TestRTCPReportStats(t *testing.T) { bothPaths(t, testRTCPReportStats) }

func testRTCPReportStats(t *testing.T, cfg Config) {
	p, _ := newPlane(t, cfg)
	c := newCall(t, p, lo4, lo4, true, false)
	c.a.SetClockRate(48000)

	rr := receiverReport(t, 0xfffffe, 480) // -2: duplicates (RFC 3550 §6.4.1)
	send(t, c.pa.rtp, c.a.Addr(), rr)      // muxed
	expect(t, c.pb.rtcp, rr, rtcpOf(c.b))
	waitFor(t, "a's report", func() bool { return c.a.Stats().Lost == -2 })
	if st := c.a.Stats(); st.JitterMS != 10 {
		t.Errorf("a: jitter %v ms, want 10 (480 at 48 kHz)", st.JitterMS)
	}
	rr = receiverReport(t, 7, 160)
	send(t, c.pb.rtcp, rtcpOf(c.b), rr)
	expect(t, c.pa.rtp, rr, c.a.Addr())
	waitFor(t, "b's report", func() bool { return c.b.Stats().Lost == 7 })
	if st := c.b.Stats(); st.JitterMS != 20 {
		t.Errorf("b: jitter %v ms, want 20 (160 at the default 8 kHz)", st.JitterMS)
	}
	if st := c.a.Stats(); st.Lost != -2 {
		t.Errorf("a's report changed: %+v", st)
	}
}

func TestPortPool(t *testing.T) {
	// 41099 is odd, so the pairs are 41100, 41102 and 41104; another
	// program holds 41103, the RTCP port of the second.
	p, reg := newPlane(t, Config{PortMin: 41099, PortMax: 41105})
	other := listenOn(t, netip.AddrPortFrom(lo4, 41103))

	var legs []*Leg
	for {
		l, err := p.Allocate(lo4)
		if errors.Is(err, media.ErrNoPorts) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		legs = append(legs, l)
		if len(legs) > 3 {
			t.Fatalf("%d legs from 3 pairs", len(legs))
		}
	}
	if len(legs) != 2 || legs[0].Addr().Port() != 41100 || legs[1].Addr().Port() != 41104 {
		t.Fatalf("legs %v, want ports 41100 and 41104", legs)
	}
	if got := metric(t, reg, "hlas_media_ports_in_use", "", ""); got != 4 {
		t.Errorf("ports_in_use %v, want 4", got)
	}
	if got := metric(t, reg, "hlas_media_port_allocation_failures_total", "", ""); got != 1 {
		t.Errorf("allocation failures %v, want 1", got)
	}

	legs[0].Close()
	legs[0].Close() // twice is fine
	l, err := p.Allocate(lo4)
	if err != nil || l.Addr().Port() != 41100 {
		t.Fatalf("after a Close: %v, %v; want port 41100 again", l, err)
	}
	other.Close()
	l2, err := p.Allocate(lo4)
	if err != nil || l2.Addr().Port() != 41102 {
		t.Fatalf("after the other program left: %v, %v; want port 41102", l2, err)
	}
	for _, l := range []*Leg{legs[1], l, l2} {
		l.Close()
	}
	if got := metric(t, reg, "hlas_media_ports_in_use", "", ""); got != 0 {
		t.Errorf("ports_in_use %v after closing all, want 0", got)
	}
}

func TestAllocateErrors(t *testing.T) {
	p, _ := newPlane(t, Config{})
	// 192.0.2.1 (TEST-NET-1) is not an address of this host: bind fails,
	// and that is not an exhausted pool.
	if _, err := p.Allocate(netip.MustParseAddr("192.0.2.1")); err == nil || errors.Is(err, media.ErrNoPorts) {
		t.Errorf("foreign address: %v", err)
	}
	if _, err := p.Allocate(netip.Addr{}); err == nil {
		t.Error("no address: no error")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allocate(lo4); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// Closing legs while their party and their partner's send: no race, no
// stale event delivered to a leg that reuses the fd numbers.
func TestCloseDuringTraffic(t *testing.T) { bothPaths(t, testCloseDuringTraffic) }

func testCloseDuringTraffic(t *testing.T, cfg Config) {
	cfg.Readers = 2
	p, _ := newPlane(t, cfg)
	src := listen(t, lo4)
	sink := newParty(t, lo4)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	targets := make(chan netip.AddrPort, 1)
	wg.Add(1)
	go func() { // the party, sending as fast as it can to the latest leg
		defer wg.Done()
		var to netip.AddrPort
		pkt := rtpPacket(1)
		for {
			select {
			case <-stop:
				return
			case to = <-targets:
			default:
			}
			if to.IsValid() {
				src.WriteToUDPAddrPort(pkt, to)
				src.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(to.Addr(), to.Port()+1))
			}
		}
	}()
	for i := range 200 {
		a, err := p.Allocate(lo4)
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.Allocate(lo4)
		if err != nil {
			t.Fatal(err)
		}
		sink.signal(b, i%2 == 0)
		Link(a, b)
		targets <- a.Addr()
		waitFor(t, "traffic", func() bool { return a.Stats().Packets > 0 })
		if i%2 == 0 {
			b.Close() // the partner first: a's reader is sending from it
			a.Close()
		} else {
			a.Close()
			b.Close()
		}
		a.Close()
	}
	close(stop)
	wg.Wait()
	// Every leg gave its ports back, and its kernel flow.
	if got := p.portsInUse(); got != 0 {
		t.Errorf("%d ports in use", got)
	}
	if p.kern != nil {
		if got := p.kern.entries.Load(); got != 0 {
			t.Errorf("%d kernel flows left", got)
		}
		var k key4
		var v fwd4
		if it := p.kern.fwd.Iterate(); it.Next(&k, &v) {
			t.Errorf("kernel table holds %+v -> %+v", k, v)
		}
	}
}

// Plane.Close ends every goroutine, closes every socket, with legs
// still open and traffic flowing; the legs' Close afterwards is a no-op.
func TestPlaneCloseEndsGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p, err := New(Config{PortMin: testPortMin, PortMax: testPortMax, Readers: 3})
	if err != nil {
		t.Fatal(err)
	}
	var legs []*Leg
	pa := newParty(t, lo4)
	for range 6 {
		a, err := p.Allocate(lo4)
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.Allocate(lo4)
		if err != nil {
			t.Fatal(err)
		}
		pa.signal(b, false)
		Link(a, b)
		send(t, pa.rtp, a.Addr(), rtpPacket(1))
		legs = append(legs, a, b)
	}
	waitFor(t, "traffic", func() bool { return legs[0].Stats().Packets > 0 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, l := range legs {
		l.Close()
	}
	// The ports are free for anyone again.
	for _, l := range legs {
		listenOn(t, l.Addr()).Close()
		listenOn(t, netip.AddrPortFrom(l.Addr().Addr(), l.Addr().Port()+1)).Close()
	}
}

func listenOn(t testing.TB, ap netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
