//go:build linux

package plane

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSecure stands in for media/webrtc: its "STUN" is a two-byte
// command (first byte 0-3, second what to make of it), its "SRTP" the
// plain packet with the payload XORed with 0x5A and a 4-byte tag
// appended. It allocates nothing on the media path.
type fakeSecure struct {
	notReady atomic.Bool
	detached atomic.Int32
	full     atomic.Bool // the DTLS queue

	mu      sync.Mutex
	records [][]byte
	from    []netip.AddrPort
}

var fakeTag = [4]byte{'T', 'A', 'G', '!'}

// Commands of the fake STUN.
const (
	cmdValid     = 'V'
	cmdNominated = 'N'
	cmdRefused   = 'R'
	cmdLimited   = 'L'
	cmdConsumed  = 'C'
)

func stunCmd(c byte) []byte { return []byte{0x00, c, 0, 0} }

func (f *fakeSecure) STUN(msg []byte, src netip.AddrPort, _ bool, resp []byte) (int, STUNResult) {
	if len(msg) < 2 {
		return 0, STUNRefused
	}
	answer := func() int { return copy(resp, append([]byte("ANS "), msg[1])) }
	switch msg[1] {
	case cmdValid:
		return answer(), STUNValid
	case cmdNominated:
		return answer(), STUNNominated
	case cmdRefused:
		return answer(), STUNRefused
	case cmdLimited:
		return 0, STUNRateLimited
	}
	return 0, STUNConsumed
}

func (f *fakeSecure) DTLS(rec []byte, src netip.AddrPort) bool {
	if f.full.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, append([]byte(nil), rec...))
	f.from = append(f.from, src)
	return true
}

func (f *fakeSecure) received() ([][]byte, []netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.records...), append([]netip.AddrPort(nil), f.from...)
}

func headerLen(rtcp bool) int {
	if rtcp {
		return 8
	}
	return 12
}

func (f *fakeSecure) Unprotect(pkt []byte, rtcp bool) (int, error) {
	if f.notReady.Load() {
		return 0, ErrNotReady
	}
	h := headerLen(rtcp)
	n := len(pkt) - len(fakeTag)
	if n < h || !bytes.Equal(pkt[n:], fakeTag[:]) {
		return 0, errors.New("fake: bad tag")
	}
	for i := h; i < n; i++ {
		pkt[i] ^= 0x5A
	}
	return n, nil
}

func (f *fakeSecure) Protect(pkt []byte, rtcp bool) (int, error) {
	if f.notReady.Load() {
		return 0, ErrNotReady
	}
	if len(pkt)+len(fakeTag) > cap(pkt) {
		return 0, ErrTooBig
	}
	for i := headerLen(rtcp); i < len(pkt); i++ {
		pkt[i] ^= 0x5A
	}
	return len(append(pkt, fakeTag[:]...)), nil
}

func (f *fakeSecure) Detached() { f.detached.Add(1) }

// protected is what the fake makes of a plain packet.
func protected(plain []byte, rtcp bool) []byte {
	b := append([]byte(nil), plain...)
	for i := headerLen(rtcp); i < len(b); i++ {
		b[i] ^= 0x5A
	}
	return append(b, fakeTag[:]...)
}

// secureCall is a browser-facing leg a with the fake, linked to a phone
// leg b.
type secureCall struct {
	a, b    *Leg
	sec     *fakeSecure
	browser *net.UDPConn
	phone   *party
}

func newSecureCall(t *testing.T, p *Plane) *secureCall {
	t.Helper()
	c := &secureCall{a: allocate(t, p, lo4), b: allocate(t, p, lo4), sec: &fakeSecure{},
		browser: listen(t, lo4), phone: newParty(t, lo4)}
	c.a.SetSecure(c.sec)
	c.phone.signal(c.b, false)
	Link(c.a, c.b)
	return c
}

// check makes the browser's socket pass an ICE check.
func (c *secureCall) check(t *testing.T, from *net.UDPConn, cmd byte) {
	t.Helper()
	send(t, from, c.a.Addr(), stunCmd(cmd))
	expect(t, from, []byte{'A', 'N', 'S', ' ', cmd}, c.a.Addr())
}

func TestSecureLeg(t *testing.T) {
	p, reg := newPlane(t, Config{})
	c := newSecureCall(t, p)
	drops := func(reason string) float64 {
		return metric(t, reg, "hlas_media_packets_dropped_total", "reason", reason)
	}
	waitDrops := func(reason string, want float64) {
		t.Helper()
		waitFor(t, reason+" drops", func() bool { return drops(reason) == want })
	}
	browser := addrOf(c.browser)

	// Before any check the browser is a stranger, whatever it sends;
	// nothing reaches the phone (the next packet it gets is the first
	// one after the check).
	send(t, c.browser, c.a.Addr(), protected(rtpPacket(1), false))
	send(t, c.browser, c.a.Addr(), []byte{0x16, 0xfe, 0xfd, 0})
	waitDrops("stranger", 2)
	if got, _ := c.sec.received(); len(got) != 0 {
		t.Fatalf("DTLS from a stranger reached the Secure: %x", got)
	}
	if err := c.a.Send([]byte("dtls")); !errors.Is(err, ErrNoDestination) {
		t.Errorf("Send before a check: %v, want ErrNoDestination", err)
	}

	// RFC 8445 §7.3: an answered check validates the source; the answer
	// goes back from the leg's RTP port.
	c.check(t, c.browser, cmdValid)
	if sel, nom := c.a.Selected(); sel != browser || nom {
		t.Fatalf("selected %v (nominated %v), want %v", sel, nom, browser)
	}

	// SRTP from it is decrypted and forwarded plain.
	send(t, c.browser, c.a.Addr(), protected(rtpPacket(2), false))
	expect(t, c.phone.rtp, rtpPacket(2), c.b.Addr())
	// SRTCP, muxed, comes out of the partner's RTCP port, plain.
	rr := receiverReport(t, 7, 80)
	send(t, c.browser, c.a.Addr(), protected(rr, true))
	expect(t, c.phone.rtcp, rr, rtcpOf(c.b))
	waitFor(t, "the report", func() bool { return c.a.Stats().Lost == 7 })

	// DTLS goes to the Secure with its source.
	send(t, c.browser, c.a.Addr(), []byte{0x16, 0xfe, 0xfd, 1})
	waitFor(t, "the DTLS record", func() bool { got, _ := c.sec.received(); return len(got) == 1 })
	if got, from := c.sec.received(); !bytes.Equal(got[0], []byte{0x16, 0xfe, 0xfd, 1}) || from[0] != browser {
		t.Errorf("DTLS record %x from %v", got[0], from[0])
	}
	c.sec.full.Store(true)
	send(t, c.browser, c.a.Addr(), []byte{0x16, 0xfe, 0xfd, 2})
	waitDrops("queue_full", 1)
	c.sec.full.Store(false)

	// Drops, each followed by a good packet that must be the next the
	// phone gets.
	for _, tt := range []struct {
		name, reason string
		to           netip.AddrPort
		pkt          []byte
	}{
		{"SRTP failing authentication", "srtp_failed", c.a.Addr(), append(rtpPacket(3), 'X', 'X', 'X', 'X')},
		{"TURN channel data (RFC 7983)", "unknown_protocol", c.a.Addr(), []byte{0x40, 0, 0, 4, 1, 2, 3, 4}},
		{"anything on the RTCP port", "unknown_protocol", rtcpOf(c.a), protected(rr, true)},
		{"refused STUN", "stun_refused", c.a.Addr(), stunCmd(cmdRefused)},
		{"rate-limited STUN", "stun_rate_limited", c.a.Addr(), stunCmd(cmdLimited)},
	} {
		before := drops(tt.reason)
		send(t, c.browser, tt.to, tt.pkt)
		waitDrops(tt.reason, before+1)
		send(t, c.browser, c.a.Addr(), protected(rtpPacket(4), false))
		expect(t, c.phone.rtp, rtpPacket(4), c.b.Addr())
	}
	// The refused STUN was answered (an error response) all the same.
	expect(t, c.browser, []byte("ANS R"), c.a.Addr())
	// A consumed STUN message is no drop.
	send(t, c.browser, c.a.Addr(), stunCmd(cmdConsumed))
	send(t, c.browser, c.a.Addr(), protected(rtpPacket(5), false))
	expect(t, c.phone.rtp, rtpPacket(5), c.b.Addr())

	// The other way: the phone's RTP and RTCP are protected and go out
	// of the RTP port, muxed, to the ICE-selected address.
	send(t, c.phone.rtp, c.b.Addr(), rtpPacket(6))
	expect(t, c.browser, protected(rtpPacket(6), false), c.a.Addr())
	send(t, c.phone.rtcp, rtcpOf(c.b), rr)
	expect(t, c.browser, protected(rr, true), c.a.Addr())
	// The Secure's own records go the same way.
	if err := c.a.Send([]byte("dtls")); err != nil {
		t.Fatal(err)
	}
	expect(t, c.browser, []byte("dtls"), c.a.Addr())

	// A packet whose tag would not fit the buffer is dropped, as is
	// anything the browser's STUN or DTLS stack would take for its own.
	for _, tt := range []struct {
		name, reason string
		pkt          []byte
	}{
		{"too big to protect", "too_big", append(rtpPacket(7), make([]byte, maxPacket-len(rtpPacket(7))-2)...)},
		{"STUN from the phone", "unknown_protocol", stunCmd(cmdValid)},
	} {
		before := drops(tt.reason)
		send(t, c.phone.rtp, c.b.Addr(), tt.pkt)
		waitDrops(tt.reason, before+1)
		send(t, c.phone.rtp, c.b.Addr(), rtpPacket(8))
		expect(t, c.browser, protected(rtpPacket(8), false), c.a.Addr())
	}

	// Without keys nothing flows either way.
	c.sec.notReady.Store(true)
	before := drops("not_ready")
	send(t, c.phone.rtp, c.b.Addr(), rtpPacket(9))
	send(t, c.browser, c.a.Addr(), protected(rtpPacket(9), false))
	waitDrops("not_ready", before+2)
	c.sec.notReady.Store(false)

	// A nomination from another validated source moves the media; a
	// later check from the first does not take it back, but its media
	// is still accepted.
	other := listen(t, lo4)
	c.check(t, other, cmdNominated)
	c.check(t, c.browser, cmdValid)
	if sel, nom := c.a.Selected(); sel != addrOf(other) || !nom {
		t.Fatalf("selected %v (nominated %v), want %v", sel, nom, addrOf(other))
	}
	send(t, c.phone.rtp, c.b.Addr(), rtpPacket(10))
	expect(t, other, protected(rtpPacket(10), false), c.a.Addr())
	send(t, c.browser, c.a.Addr(), protected(rtpPacket(11), false))
	expect(t, c.phone.rtp, rtpPacket(11), c.b.Addr())

	// An ICE restart forgets them all.
	c.a.RestartICE()
	before = drops("stranger")
	send(t, other, c.a.Addr(), protected(rtpPacket(12), false))
	waitDrops("stranger", before+1)
	if sel, _ := c.a.Selected(); sel.IsValid() {
		t.Errorf("selected %v after an ICE restart", sel)
	}
}

// SetSecure and Close tell a Secure when the leg lets go of it, once.
func TestSecureDetached(t *testing.T) {
	p, _ := newPlane(t, Config{})
	l := allocate(t, p, lo4)
	s1, s2 := &fakeSecure{}, &fakeSecure{}
	l.SetSecure(s1)
	l.SetSecure(s1) // the same again: nothing happens
	if n := s1.detached.Load(); n != 0 {
		t.Fatalf("detached %d times while attached", n)
	}
	l.SetSecure(s2)
	if n := s1.detached.Load(); n != 1 {
		t.Fatalf("replaced: detached %d times", n)
	}
	l.SetSecure(nil)
	if n := s2.detached.Load(); n != 1 {
		t.Fatalf("removed: detached %d times", n)
	}
	// A plain leg again: it latches and forwards untouched.
	s3 := &fakeSecure{}
	l.SetSecure(s3)
	l.Close()
	l.Close()
	if n := s3.detached.Load(); n != 1 {
		t.Fatalf("leg closed: detached %d times", n)
	}
	s4 := &fakeSecure{}
	l.SetSecure(s4)
	if n := s4.detached.Load(); n != 1 {
		t.Fatalf("set on a closed leg: detached %d times", n)
	}
	if err := l.Send([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send on a closed leg: %v", err)
	}

	// Plane.Close detaches the Secures of the legs still open.
	p2, err := New(Config{PortMin: testPortMin + 500, PortMax: testPortMax})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := p2.Allocate(lo4)
	if err != nil {
		t.Fatal(err)
	}
	s5 := &fakeSecure{}
	l2.SetSecure(s5)
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if n := s5.detached.Load(); n != 1 {
		t.Fatalf("plane closed: detached %d times", n)
	}
	l2.Close()
	if n := s5.detached.Load(); n != 1 {
		t.Fatalf("leg closed after its plane: detached %d times", n)
	}
}

// Send on a plain leg goes where its RTP goes.
func TestSendPlain(t *testing.T) {
	p, _ := newPlane(t, Config{})
	l := allocate(t, p, lo4)
	if err := l.Send([]byte("x")); !errors.Is(err, ErrNoDestination) {
		t.Errorf("nothing signalled: %v", err)
	}
	pt := newParty(t, lo4)
	pt.signal(l, false)
	if err := l.Send([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	expect(t, pt.rtp, []byte("hello"), l.Addr())
}

// TestSecureNoAllocation: the plane adds no allocation to a packet
// through a secure leg, either way (the Secure's own cost aside; the
// fake allocates nothing).
func TestSecureNoAllocation(t *testing.T) {
	p, _ := newPlane(t, Config{Readers: 1})
	c := newSecureCall(t, p)
	c.check(t, c.browser, cmdNominated)
	in, out := protected(rtpPacket(1), false), rtpPacket(1)
	buf := make([]byte, 2048)
	c.browser.SetReadDeadline(time.Now().Add(time.Minute))
	c.phone.rtp.SetReadDeadline(time.Now().Add(time.Minute))
	once := func() {
		if _, err := c.browser.WriteToUDPAddrPort(in, c.a.Addr()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.phone.rtp.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.phone.rtp.WriteToUDPAddrPort(out, c.b.Addr()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.browser.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	once()
	if n := testing.AllocsPerRun(500, once); n != 0 {
		t.Errorf("%v allocations per round trip through a secure leg, want none", n)
	}
}
