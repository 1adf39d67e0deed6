//go:build linux

package plane

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test port range: out of the way of the default one.
const testPortMin, testPortMax = 41000, 41999

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// newPlane starts a plane on the test range, closed with the test; the
// kernel path is off unless cfg asks for it.
func newPlane(t testing.TB, cfg Config) (*Plane, *prometheus.Registry) {
	t.Helper()
	if cfg.Kernel == "" {
		cfg.Kernel = KernelOff
	}
	if cfg.PortMin == 0 {
		cfg.PortMin, cfg.PortMax = testPortMin, testPortMax
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p, reg
}

// bothPaths runs a behaviour test on the userspace plane and on the
// kernel path, which must not differ in what the parties see.
func bothPaths(t *testing.T, test func(t *testing.T, cfg Config)) {
	t.Run("userspace", func(t *testing.T) { test(t, Config{Kernel: KernelOff}) })
	t.Run("kernel", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("the kernel path needs root (CAP_BPF and CAP_NET_ADMIN); CI runs as root")
		}
		test(t, Config{Kernel: KernelOn})
	})
}

func allocate(t testing.TB, p *Plane, a netip.Addr) *Leg {
	t.Helper()
	l, err := p.Allocate(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// party is a phone: an RTP and an RTCP socket on loopback.
type party struct {
	rtp, rtcp *net.UDPConn
}

func newParty(t testing.TB, a netip.Addr) *party {
	t.Helper()
	return &party{rtp: listen(t, a), rtcp: listen(t, a)}
}

func listen(t testing.TB, a netip.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// signal gives the leg the party's addresses, as SDP would.
func (pt *party) signal(l *Leg, mux bool) {
	l.SetPeer(addrOf(pt.rtp), addrOf(pt.rtcp), mux)
}

func send(t testing.TB, c *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// recv waits for the next datagram on c; the deadline only bounds a
// failing test.
func recv(t testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("waiting on %v: %v", c.LocalAddr(), err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// expect reads the next datagram on c and checks it and its source.
func expect(t testing.TB, c *net.UDPConn, want []byte, from netip.AddrPort) {
	t.Helper()
	got, src := recv(t, c)
	if !bytes.Equal(got, want) {
		t.Fatalf("%v received %x, want %x", addrOf(c), got, want)
	}
	if src != from {
		t.Fatalf("%v received from %v, want %v", addrOf(c), src, from)
	}
}

// waitFor polls cond; the bound only ends a failing test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// rtpPacket is a G.711 packet of 20 ms with sequence number seq.
func rtpPacket(seq uint16) []byte {
	b := make([]byte, 12+160)
	b[0], b[1] = 0x80, 0 // V=2, PT 0
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[8:], 0x11223344)
	for i := 12; i < len(b); i++ {
		b[i] = byte(seq) + byte(i)
	}
	return b
}

// receiverReport is an RTCP RR with one report block.
func receiverReport(t testing.TB, lost, jitter uint32) []byte {
	t.Helper()
	b, err := (&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 0x11223344, TotalLost: lost, Jitter: jitter}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// metric is the value of the series of name whose labels include
// label=value ("" for none).
func metric(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := label == ""
			for _, lp := range m.GetLabel() {
				ok = ok || lp.GetName() == label && lp.GetValue() == value
			}
			if !ok {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s{%s=%q}", name, label, value)
	return 0
}
