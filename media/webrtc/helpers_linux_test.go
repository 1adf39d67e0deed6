//go:build linux

package webrtc

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/deadline"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/media/plane"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test port range: out of the way of the default, of media/plane's
// (TestManyLegs takes 40000-60999) and of the ephemeral ports.
const testPortMin, testPortMax = 61000, 61999

var lo4 = netip.MustParseAddr("127.0.0.1")

// bridge is a relay stream: leg a faces the browser through an
// Endpoint, leg b a phone that speaks plain RTP on two sockets.
type bridge struct {
	p                   *plane.Plane
	reg                 *prometheus.Registry
	a, b                *plane.Leg
	e                   *Endpoint
	phoneRTP, phoneRTCP *net.UDPConn
}

func newPlane(t testing.TB) (*plane.Plane, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	// A leg with a Secure never uses the kernel path; without it the
	// plane's goroutines are its readers only (TestCloseEndsGoroutines).
	p, err := plane.New(plane.Config{PortMin: testPortMin, PortMax: testPortMax, Registerer: reg, Kernel: plane.KernelOff})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, reg
}

func newBridge(t testing.TB, cfg Config) *bridge {
	t.Helper()
	p, reg := newPlane(t)
	br := &bridge{p: p, reg: reg, phoneRTP: listen(t), phoneRTCP: listen(t)}
	var err error
	if br.a, err = p.Allocate(lo4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.a.Close)
	if br.b, err = p.Allocate(lo4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.b.Close)
	br.b.SetPeer(addrOf(br.phoneRTP), addrOf(br.phoneRTCP), false)
	plane.Link(br.a, br.b)
	if cfg.Identity == nil {
		cfg.Identity = newIdentity(t)
	}
	if br.e, err = Attach(br.a, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.e.Close() })
	return br
}

func newIdentity(t testing.TB) *Identity {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
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

func rtcpAddr(l *plane.Leg) netip.AddrPort {
	return netip.AddrPortFrom(l.Addr().Addr(), l.Addr().Port()+1)
}

// waitFor polls cond; the bound only ends a failing test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// recv waits for the next datagram on c; the deadline only bounds a
// failing test.
func recv(t testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 4096)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("waiting on %v: %v", c.LocalAddr(), err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// tryRecv reads a datagram if one comes within a poll interval.
func tryRecv(c *net.UDPConn) ([]byte, bool) {
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, false
	}
	return buf[:n], true
}

// metric is the value of the counter series of name with label=value.
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
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{%s=%q}", name, label, value)
	return 0
}

func (br *bridge) drops(t testing.TB, reason string) float64 {
	t.Helper()
	return metric(t, br.reg, "hlas_media_packets_dropped_total", "reason", reason)
}

// payload is the G.711 payload of packet seq: recognisable, so that an
// encrypted or foreign one cannot pass for it.
func payload(seq uint16) []byte {
	b := make([]byte, 160)
	for i := range b {
		b[i] = byte(seq) ^ byte(i*7)
	}
	return b
}

// phonePacket is the phone's RTP packet seq.
func phonePacket(t testing.TB, ssrc uint32, seq uint16) []byte {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: 160 * uint32(seq), SSRC: ssrc}, Payload: payload(seq)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectPlainRTP reads the phone's RTP socket until a packet comes, and
// checks that it is plain RTP with the payload of its sequence number.
func expectPlainRTP(t testing.TB, c *net.UDPConn, from netip.AddrPort) *rtp.Packet {
	t.Helper()
	b, src := recv(t, c)
	if src != from {
		t.Fatalf("RTP from %v, want %v", src, from)
	}
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		t.Fatalf("not RTP: %v", err)
	}
	if !bytes.Equal(p.Payload, payload(p.SequenceNumber)) {
		t.Fatalf("packet %d: payload %x is not the plain one", p.SequenceNumber, p.Payload)
	}
	return &p
}

// stub is a minimal browser made of pion/stun, pion/dtls and pion/srtp
// on one UDP socket: enough to drive the endpoint without pion/webrtc,
// and to see exactly what goes over the wire.
type stub struct {
	t     testing.TB
	sock  *demuxConn
	id    *Identity
	ufrag string
	pwd   string
	leg   netip.AddrPort
	local Params // the endpoint's
	conn  *dtls.Conn
	keys  *srtpKeys // the stub's: local is what it sends
}

func newStub(t testing.TB, br *bridge) *stub {
	t.Helper()
	s := &stub{t: t, sock: newDemuxConn(t), id: newIdentity(t), ufrag: "stubUfrag", pwd: "stubPasswordStubPassword",
		leg: br.a.Addr(), local: br.e.Local()}
	return s
}

func (s *stub) params() Params {
	return Params{Ufrag: s.ufrag, Pwd: s.pwd, Fingerprint: s.id.Fingerprint()}
}

// check sends a connectivity check and returns the answer.
func (s *stub) check(pwd string, nominate bool) *stun.Message {
	s.t.Helper()
	extra := []stun.Setter{priority, controlling}
	if nominate {
		extra = append(extra, useCandidate)
	}
	s.sock.send(s.t, s.leg, check(s.t, s.local.Ufrag+":"+s.ufrag, pwd, extra...))
	var m stun.Message
	if err := stun.Decode(s.sock.next(s.t, s.sock.stun), &m); err != nil {
		s.t.Fatal(err)
	}
	return &m
}

// handshake runs DTLS with the endpoint, the stub in the given role.
func (s *stub) handshake(client bool) error {
	s.t.Helper()
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		fp, err := parseFingerprint(s.local.Fingerprint)
		if err != nil {
			return err
		}
		return fp.verify(raw)
	}
	opts := []dtls.Option{
		dtls.WithCertificates(s.id.cert),
		dtls.WithSRTPProtectionProfiles(srtpProfiles...),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(verify),
	}
	raddr := net.UDPAddrFromAddrPort(s.leg)
	var err error
	if client {
		var co []dtls.ClientOption
		for _, o := range opts {
			co = append(co, o)
		}
		s.conn, err = dtls.ClientWithOptions(s.sock, raddr, co...)
	} else {
		var so []dtls.ServerOption
		for _, o := range opts {
			so = append(so, o)
		}
		so = append(so, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		s.conn, err = dtls.ServerWithOptions(s.sock, raddr, so...)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { s.conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.conn.HandshakeContext(ctx); err != nil {
		return err
	}
	k, err := newSRTPKeys(s.conn, client)
	if err != nil {
		s.t.Fatal(err)
	}
	s.keys = k
	return nil
}

// sendSRTP protects plain and sends it to the leg.
func (s *stub) sendSRTP(plain []byte, isRTCP bool) {
	s.t.Helper()
	buf := append(make([]byte, 0, 2048), plain...)
	n, err := s.keys.protect(buf, isRTCP)
	if err != nil {
		s.t.Fatal(err)
	}
	s.sock.send(s.t, s.leg, buf[:n])
}

// recvSRTP returns the next SRTP packet from the leg, decrypted.
func (s *stub) recvSRTP(isRTCP bool) []byte {
	s.t.Helper()
	b := s.sock.next(s.t, s.sock.media)
	n, err := s.keys.unprotect(b, isRTCP)
	if err != nil {
		s.t.Fatalf("SRTP from the relay: %v", err)
	}
	return b[:n]
}

// demuxConn is a UDP socket whose datagrams are sorted by first byte
// (RFC 7983), as a browser does: DTLS feeds the pion/dtls connection
// it serves as net.PacketConn, STUN and media wait for the test.
type demuxConn struct {
	conn              *net.UDPConn
	dtls, stun, media chan []byte
	closed            chan struct{}
	once              sync.Once
	deadline          *deadline.Deadline
	done              chan struct{}
}

func newDemuxConn(t testing.TB) *demuxConn {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	d := &demuxConn{conn: c, dtls: make(chan []byte, 64), stun: make(chan []byte, 64), media: make(chan []byte, 1024),
		closed: make(chan struct{}), deadline: deadline.New(), done: make(chan struct{})}
	go d.loop()
	t.Cleanup(d.shut)
	return d
}

// shut closes the socket and waits for the reading goroutine.
func (d *demuxConn) shut() {
	d.conn.Close()
	<-d.done
}

func (d *demuxConn) loop() {
	defer close(d.done)
	for {
		buf := make([]byte, 2048)
		n, err := d.conn.Read(buf)
		if err != nil {
			return
		}
		var ch chan []byte
		switch c := buf[0]; {
		case n == 0:
			continue
		case c <= 3:
			ch = d.stun
		case c >= 20 && c <= 63:
			ch = d.dtls
		default:
			ch = d.media
		}
		select {
		case ch <- buf[:n]:
		default:
		}
	}
}

func (d *demuxConn) addr() netip.AddrPort { return addrOf(d.conn) }

func (d *demuxConn) send(t testing.TB, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := d.conn.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// next waits for a datagram on ch; the bound only ends a failing test.
func (d *demuxConn) next(t testing.TB, ch chan []byte) []byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(15 * time.Second):
		t.Fatal("timed out waiting for a datagram")
		return nil
	}
}

func (d *demuxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case <-d.closed:
		return 0, nil, net.ErrClosed
	case <-d.deadline.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case rec := <-d.dtls:
		return copy(b, rec), d.conn.LocalAddr(), nil
	}
}

func (d *demuxConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-d.closed:
		return 0, net.ErrClosed
	default:
	}
	return d.conn.WriteTo(b, addr)
}

// Close ends the DTLS side; the socket stays for the test.
func (d *demuxConn) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

func (d *demuxConn) LocalAddr() net.Addr                { return d.conn.LocalAddr() }
func (d *demuxConn) SetDeadline(t time.Time) error      { return d.SetReadDeadline(t) }
func (d *demuxConn) SetReadDeadline(t time.Time) error  { d.deadline.Set(t); return nil }
func (d *demuxConn) SetWriteDeadline(t time.Time) error { return nil }

// setKeys gives the endpoint SRTP keys without a handshake (for
// benchmarks of the packet path) and returns the browser's side.
func setKeys(t testing.TB, e *Endpoint, profile srtp.ProtectionProfile) *srtpKeys {
	t.Helper()
	relay, browser := testKeys(t, profile)
	s := newSession(e, false, fingerprint{})
	s.keys.Store(relay)
	if old := e.sess.Swap(s); old != nil {
		old.stop()
	}
	return browser
}

// validate makes sock's address pass an ICE check of e, nominated.
func validate(t testing.TB, e *Endpoint, leg netip.AddrPort, sock *net.UDPConn) {
	t.Helper()
	local := e.Local()
	creds := e.ice.Load()
	remote := creds.remoteUfrag
	if remote == "" {
		remote = "bench"
	}
	if _, err := sock.WriteToUDPAddrPort(check(t, local.Ufrag+":"+remote, local.Pwd, controlling, useCandidate), leg); err != nil {
		t.Fatal(err)
	}
	b, _ := recv(t, sock)
	var m stun.Message
	if err := stun.Decode(b, &m); err != nil || m.Type != stun.BindingSuccess {
		t.Fatalf("check answered %v (%v)", m.Type, err)
	}
}
