//go:build linux

package plane

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// kernelPlane starts a plane that must have the kernel path.
func kernelPlane(t *testing.T) (*Plane, *prometheus.Registry, func(name string) float64) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the kernel path needs root (CAP_BPF and CAP_NET_ADMIN); CI runs as root")
	}
	p, reg := newPlane(t, Config{Kernel: KernelOn})
	if !p.Kernel() {
		t.Fatal("Kernel() false with kernel: on")
	}
	return p, reg, func(name string) float64 { return metric(t, reg, name, "", "") }
}

// userPackets is what the readers forwarded themselves.
func userPackets(p *Plane) (n uint64) {
	for _, c := range p.counters() {
		n += c.packets.Load()
	}
	return n
}

// Once a party's source is latched its RTP goes through the kernel:
// every packet arrives, unchanged, from the partner leg's port, and the
// leg's statistics and the metrics count it as the readers' would.
func TestKernelForward(t *testing.T) {
	for _, lo := range []netip.Addr{lo4, lo6} {
		t.Run(lo.String(), func(t *testing.T) { testKernelForward(t, lo) })
	}
}

func testKernelForward(t *testing.T, lo netip.Addr) {
	p, reg, m := kernelPlane(t)
	c := newCall(t, p, lo, lo, false, false)
	const n = 200
	start := time.Now()
	for i := range uint16(n) {
		if i == 1 {
			// The reader writes each flow before it forwards the
			// packet that latched it.
			if got := m("hlas_media_kernel_flows"); got != 2 {
				t.Fatalf("kernel_flows %v after the first exchange, want 2", got)
			}
		}
		send(t, c.pa.rtp, c.a.Addr(), rtpPacket(i))
		expect(t, c.pb.rtp, rtpPacket(i), c.b.Addr())
		send(t, c.pb.rtp, c.b.Addr(), rtpPacket(1000+i))
		expect(t, c.pa.rtp, rtpPacket(1000+i), c.a.Addr())
	}
	// The first packet of each party is latched in userspace; the rest
	// never reach a reader.
	if got := userPackets(p); got != 2 {
		t.Errorf("readers forwarded %d packets, want 2 (the first of each party)", got)
	}
	if got := m("hlas_media_kernel_packets_forwarded_total"); got != 2*(n-1) {
		t.Errorf("kernel_packets_forwarded_total %v, want %d", got, 2*(n-1))
	}
	if got := m("hlas_media_packets_forwarded_total"); got != 2*n {
		t.Errorf("packets_forwarded_total %v, want %d", got, 2*n)
	}
	if got := m("hlas_media_bytes_forwarded_total"); got != 2*n*float64(len(rtpPacket(0))) {
		t.Errorf("bytes_forwarded_total %v, want %d", got, 2*n*len(rtpPacket(0)))
	}
	if got := m("hlas_media_kernel_flows"); got != 2 {
		t.Errorf("kernel_flows %v, want 2", got)
	}
	for _, l := range []*Leg{c.a, c.b} {
		st := l.Stats()
		if st.Packets != n || st.Bytes != n*uint64(len(rtpPacket(0))) || st.Dropped != 0 {
			t.Errorf("%v: %+v, want %d packets of %d bytes, none dropped", l.Addr(), st, n, len(rtpPacket(0)))
		}
		if st.Last.Before(start.Add(-time.Second)) || st.Last.After(time.Now().Add(time.Second)) {
			t.Errorf("%v: last packet at %v, the test ran from %v", l.Addr(), st.Last, start)
		}
	}

	// RTCP on the RTP port (RFC 5761) still reaches the reader, which
	// reads its report, and is forwarded as before.
	rr := receiverReport(t, 5, 80)
	send(t, c.pa.rtp, c.a.Addr(), rr)
	expect(t, c.pb.rtcp, rr, rtcpOf(c.b))
	waitFor(t, "the report read and forwarded", func() bool { return c.a.Stats().Lost == 5 && userPackets(p) == 3 })

	// Closing b ends both flows at once: a's party's packets reach the
	// reader and are dropped there, and b's counts are kept.
	before := c.b.Stats()
	c.b.Close()
	if got := m("hlas_media_kernel_flows"); got != 0 {
		t.Errorf("kernel_flows %v after a close, want 0", got)
	}
	if st := c.b.Stats(); st.Packets != before.Packets || st.Bytes != before.Bytes {
		t.Errorf("b after close: %+v, before: %+v", st, before)
	}
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(9))
	waitFor(t, "the drop", func() bool { return c.a.Stats().Dropped == 1 })
	if got := metric(t, reg, "hlas_media_packets_dropped_total", "reason", "no_partner"); got != 1 {
		t.Errorf("dropped{no_partner} %v, want 1", got)
	}
	// The totals do not go down when a closed leg's slot is cleared.
	if got := m("hlas_media_packets_forwarded_total"); got != 2*n+1 {
		t.Errorf("packets_forwarded_total %v after the close, want %d", got, 2*n+1)
	}
}

// The kernel's table follows every change the plane makes: a party that
// moves (a new NAT mapping in the window), a party put on hold and
// resumed, a stranger after the window. Each step waits until the table
// has the flows it must have, then checks that the packets took the
// path they must take.
func TestKernelFollowsPlane(t *testing.T) {
	p, reg, m := kernelPlane(t)
	c := newCall(t, p, lo4, lo4, false, false)
	nat, nat2, stranger := newParty(t, lo4), newParty(t, lo4), newParty(t, lo4)
	flows := func(want float64) {
		t.Helper()
		waitFor(t, "kernel flows", func() bool { return m("hlas_media_kernel_flows") == want })
	}
	// exchange sends one packet each way, a's party from its, and
	// checks whether the readers saw them.
	exchange := func(from *party, seq uint16, viaKernel bool) {
		t.Helper()
		u, k := userPackets(p), m("hlas_media_kernel_packets_forwarded_total")
		send(t, from.rtp, c.a.Addr(), rtpPacket(seq))
		expect(t, c.pb.rtp, rtpPacket(seq), c.b.Addr())
		send(t, c.pb.rtp, c.b.Addr(), rtpPacket(seq+1))
		expect(t, from.rtp, rtpPacket(seq+1), c.a.Addr())
		// The program counts before it passes a packet on; a reader
		// counts after sending, so the receipt may come first.
		if got := m("hlas_media_kernel_packets_forwarded_total") - k; viaKernel && got != 2 {
			t.Errorf("packets %d/%d: the kernel forwarded %v of them, want both", seq, seq+1, got)
		}
		if !viaKernel {
			waitFor(t, "the reader's count", func() bool { return userPackets(p) > u })
		}
	}

	exchange(nat, 10, false) // latching, in userspace
	flows(2)
	exchange(nat, 20, true)

	// A new mapping inside the window: the reader latches onto it, and
	// both flows follow (a's key, b's destination).
	send(t, nat2.rtp, c.a.Addr(), rtpPacket(30))
	expect(t, c.pb.rtp, rtpPacket(30), c.b.Addr())
	waitFor(t, "a's flow moved", func() bool {
		c.a.kmu.Lock()
		defer c.a.kmu.Unlock()
		return c.a.koff.on && c.a.koff.cur.src == addrOf(nat2.rtp)
	})
	waitFor(t, "b's flow moved", func() bool {
		c.b.kmu.Lock()
		defer c.b.kmu.Unlock()
		return c.b.koff.on && c.b.koff.cur.dst == addrOf(nat2.rtp)
	})
	exchange(nat2, 40, true)

	// After the window, the old mapping and a stranger are dropped by
	// the reader: neither matches the table.
	p.skew.Add(int64(2 * DefaultLatchWindow))
	send(t, nat.rtp, c.a.Addr(), rtpPacket(50))
	send(t, stranger.rtp, c.a.Addr(), rtpPacket(51))
	waitFor(t, "two strangers dropped", func() bool { return c.a.Stats().Dropped == 2 })
	exchange(nat2, 60, true)

	// Hold (re-INVITE with c=0.0.0.0 from b's party): nothing may go
	// to b's party, so a's flow leaves the kernel; so does b's, whose
	// latched source is forgotten with its signalled address.
	c.b.SetPeer(netip.AddrPortFrom(netip.IPv4Unspecified(), addrOf(c.pb.rtp).Port()), netip.AddrPort{}, false)
	flows(0)
	send(t, nat2.rtp, c.a.Addr(), rtpPacket(70))
	waitFor(t, "the held packet dropped", func() bool {
		return metric(t, reg, "hlas_media_packets_dropped_total", "reason", "no_destination") == 1
	})
	// Resume: b's party signals its address again.
	c.pb.signal(c.b, false)
	flows(1) // a's flow, to the signalled address; b's waits for its party's first packet
	exchange(nat2, 80, false)
	flows(2)
	exchange(nat2, 90, true)
	if got := c.a.Stats().Dropped; got != 3 {
		t.Errorf("a dropped %d, want 3", got)
	}

	// A re-INVITE moves a's party: b's flow goes to the new address at
	// once, in the kernel; a's own waits for its first packet from there.
	moved := newParty(t, lo4)
	moved.signal(c.a, false)
	flows(1)
	k := m("hlas_media_kernel_packets_forwarded_total")
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(100))
	expect(t, moved.rtp, rtpPacket(100), c.a.Addr())
	if got := m("hlas_media_kernel_packets_forwarded_total") - k; got != 1 {
		t.Errorf("the kernel forwarded %v packets to the moved party, want 1", got)
	}
	exchange(moved, 110, false)
	flows(2)
	exchange(moved, 120, true)

	// Relinking a to a third leg takes both flows of the old pair out
	// (b's party has no partner now); a's follows its new partner.
	d := allocate(t, p, lo4)
	pd := newParty(t, lo4)
	pd.signal(d, false)
	Link(c.a, d)
	flows(1)
	k = m("hlas_media_kernel_packets_forwarded_total")
	send(t, moved.rtp, c.a.Addr(), rtpPacket(130))
	expect(t, pd.rtp, rtpPacket(130), d.Addr())
	send(t, c.pb.rtp, c.b.Addr(), rtpPacket(131))
	waitFor(t, "b's packet dropped", func() bool { return c.b.Stats().Dropped == 1 })
	if got := m("hlas_media_kernel_packets_forwarded_total") - k; got != 1 {
		t.Errorf("the kernel forwarded %v packets after the relink, want 1 (to d's party)", got)
	}

	// A Secure (WebRTC) on d: nothing of the pair stays in the kernel.
	d.SetSecure(&fakeSecure{})
	flows(0)
	d.SetSecure(nil)
	flows(1)
}

// In auto the plane relays in userspace where the kernel path does not
// load; with on it refuses to start.
func TestKernelUnavailable(t *testing.T) {
	fail := func(int) (*kernel, error) { return nil, errors.New("no tcx here") }
	p, _ := newPlane(t, Config{Kernel: KernelAuto, loadKernel: fail})
	if p.Kernel() {
		t.Fatal("Kernel() true with a failing kernel path")
	}
	c := newCall(t, p, lo4, lo4, false, false)
	send(t, c.pa.rtp, c.a.Addr(), rtpPacket(1))
	expect(t, c.pb.rtp, rtpPacket(1), c.b.Addr())
	if _, err := New(Config{PortMin: testPortMin, PortMax: testPortMax, Kernel: KernelOn, loadKernel: fail}); err == nil {
		t.Fatal("kernel: on started without the kernel path")
	}
}

// Calls the program cannot take (a leg of each family, a dual-stack leg
// bound to ::) never enter its table, and are relayed by the readers.
func TestKernelLeavesBridging(t *testing.T) {
	p, _, m := kernelPlane(t)
	c := newCall(t, p, lo4, lo6, false, false)
	a := allocate(t, p, netip.IPv6Unspecified())
	b := allocate(t, p, lo4)
	pa, pb := newParty(t, lo4), newParty(t, lo4)
	pa.signal(a, false)
	pb.signal(b, false)
	Link(a, b)
	aAddr := netip.AddrPortFrom(lo4, a.Addr().Port())
	for i := range uint16(3) {
		send(t, c.pa.rtp, c.a.Addr(), rtpPacket(i))
		expect(t, c.pb.rtp, rtpPacket(i), c.b.Addr())
		send(t, c.pb.rtp, c.b.Addr(), rtpPacket(10+i))
		expect(t, c.pa.rtp, rtpPacket(10+i), c.a.Addr())
		send(t, pb.rtp, b.Addr(), rtpPacket(20+i))
		expect(t, pa.rtp, rtpPacket(20+i), aAddr)
		send(t, pa.rtp, aAddr, rtpPacket(30+i))
		expect(t, pb.rtp, rtpPacket(30+i), b.Addr())
	}
	if got := m("hlas_media_kernel_flows"); got != 0 {
		t.Errorf("kernel_flows %v, want 0", got)
	}
	if got := m("hlas_media_kernel_packets_forwarded_total"); got != 0 {
		t.Errorf("the kernel forwarded %v packets, want none", got)
	}
}

// Interfaces that appear after the start get the program, and ones that
// go away give their links back. (A veth pair, down, carrying nothing.)
func TestKernelFollowsLinks(t *testing.T) {
	p, _, _ := kernelPlane(t)
	before := p.kern.attached()
	name := fmt.Sprintf("hlk%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "link", "add", name, "type", "veth", "peer", "name", name+"p").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	waitFor(t, "the new interfaces attached", func() bool { return p.kern.attached() == before+2 })
	if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v: %s", err, out)
	}
	waitFor(t, "its link given back", func() bool { return p.kern.attached() == before })
}
