package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/media/plane"
)

// phone is one party: an RTP socket and the SDP it would send.
type phone struct {
	t    *testing.T
	conn *net.UDPConn
	tag  string
}

func newPhone(t *testing.T, ip, tag string) *phone {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &phone{t: t, conn: c, tag: tag}
}

func (p *phone) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// sdp is the phone's description: its socket's address and port.
func (p *phone) sdp(extra string) []byte {
	a := p.addr()
	fam := "IP4"
	if a.Addr().Is6() {
		fam = "IP6"
	}
	return []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN %[1]s %[2]s\r\ns=-\r\nc=IN %[1]s %[2]s\r\nt=0 0\r\nm=audio %[3]d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n%[4]s",
		fam, a.Addr(), a.Port(), extra))
}

var (
	reConn = regexp.MustCompile(`(?m)^c=IN IP[46] (\S+)\r$`)
	rePort = regexp.MustCompile(`(?m)^m=audio (\d+) `)
)

// relayAddr reads where a rewritten SDP sends the media.
func relayAddr(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	c, m := reConn.FindAllSubmatch(body, -1), rePort.FindSubmatch(body)
	if len(c) == 0 || m == nil {
		t.Fatalf("no c= or m= in\n%s", body)
	}
	port, _ := strconv.Atoi(string(m[1]))
	return netip.AddrPortFrom(netip.MustParseAddr(string(c[len(c)-1][1])), uint16(port))
}

// send sends n RTP-looking packets to dst.
func (p *phone) send(dst netip.AddrPort, n int) {
	p.t.Helper()
	pkt := make([]byte, 172)
	pkt[0], pkt[1] = 0x80, 0
	for i := range n {
		pkt[3] = byte(i)
		if _, err := p.conn.WriteToUDPAddrPort(pkt, dst); err != nil {
			p.t.Fatal(err)
		}
	}
}

// recv counts the packets that arrive within d, and where they came from.
func (p *phone) recv(d time.Duration) (int, netip.AddrPort) {
	buf := make([]byte, 2048)
	n := 0
	var from netip.AddrPort
	deadline := time.Now().Add(d)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		_, a, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return n, from
		}
		n++
		from = a
	}
}

func newRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	if cfg.Plane.PortMin == 0 {
		cfg.Plane.PortMin, cfg.Plane.PortMax = 31000, 31999 // below the ephemeral ports, away from media/plane's tests
	}
	cfg.Plane.Readers = 1
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRelayCall(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRelay(t, Config{})
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")
	a, b := newPhone(t, "127.0.0.1", "a1"), newPhone(t, "127.0.0.1", "b1")
	offer, err := r.Offer(ctx, &media.Request{CallID: "c1", FromTag: "a1", SDP: a.sdp(""), Source: lo, Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	toB := relayAddr(t, offer) // where b sends
	if toB == a.addr() || toB.Addr() != lo {
		t.Fatalf("offer not rewritten:\n%s", offer)
	}
	answer, err := r.Answer(ctx, &media.Request{CallID: "c1", FromTag: "b1", ToTag: "a1", SDP: b.sdp(""), Source: lo, Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	toA := relayAddr(t, answer) // where a sends
	if toA == toB || toA == b.addr() {
		t.Fatalf("answer not rewritten to a port of its own:\n%s", answer)
	}
	a.send(toA, 20)
	if n, from := b.recv(300 * time.Millisecond); n != 20 || from != toB {
		t.Errorf("b got %d packets from %v, want 20 from %v", n, from, toB)
	}
	b.send(toB, 10)
	if n, from := a.recv(300 * time.Millisecond); n != 10 || from != toA {
		t.Errorf("a got %d packets from %v, want 10 from %v", n, from, toA)
	}
	if r.Calls() != 1 {
		t.Errorf("%d calls", r.Calls())
	}
	st, err := r.Delete(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Streams != 1 || st.Caller.Packets != 20 || st.Callee.Packets != 10 || st.Caller.Bytes != 20*172 {
		t.Errorf("stats %+v", st)
	}
	if _, err := r.Delete(ctx, "c1"); !errors.Is(err, media.ErrNoSession) {
		t.Errorf("second delete: %v", err)
	}
	// The ports are closed: nothing is forwarded any more.
	a.send(toA, 5)
	if n, _ := b.recv(100 * time.Millisecond); n != 0 {
		t.Errorf("b got %d packets after the delete", n)
	}
	r.Close()
}

func TestRelayIPv6Bridge(t *testing.T) {
	r := newRelay(t, Config{})
	ctx := context.Background()
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	a, b := newPhone(t, "::1", "a1"), newPhone(t, "127.0.0.1", "b1")
	// The caller is on IPv6, the callee on IPv4: each must see its own
	// family.
	offer, err := r.Offer(ctx, &media.Request{CallID: "c6", FromTag: "a1", SDP: a.sdp(""), Source: v6, Local: v6, Advertise: v4})
	if err != nil {
		t.Fatal(err)
	}
	toB := relayAddr(t, offer)
	answer, err := r.Answer(ctx, &media.Request{CallID: "c6", FromTag: "b1", ToTag: "a1", SDP: b.sdp(""), Source: v4, Local: v4, Advertise: v6})
	if err != nil {
		t.Fatal(err)
	}
	toA := relayAddr(t, answer)
	if !toB.Addr().Is4() || !toA.Addr().Is6() {
		t.Fatalf("families: callee sees %v, caller sees %v", toB, toA)
	}
	a.send(toA, 5)
	if n, _ := b.recv(300 * time.Millisecond); n != 5 {
		t.Errorf("IPv4 callee got %d of 5", n)
	}
	b.send(toB, 5)
	if n, _ := a.recv(300 * time.Millisecond); n != 5 {
		t.Errorf("IPv6 caller got %d of 5", n)
	}
}

func TestRelayReinviteKeepsPorts(t *testing.T) {
	r := newRelay(t, Config{})
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")
	a, b := newPhone(t, "127.0.0.1", "a1"), newPhone(t, "127.0.0.1", "b1")
	req := func(from, to string, sdp []byte) *media.Request {
		return &media.Request{CallID: "c2", FromTag: from, ToTag: to, SDP: sdp, Source: lo, Local: lo, Advertise: lo}
	}
	o1, _ := r.Offer(ctx, req("a1", "", a.sdp("")))
	a1, _ := r.Answer(ctx, req("b1", "a1", b.sdp("")))
	// The callee puts the call on hold, then resumes from a new port.
	hold, err := r.Offer(ctx, req("b1", "a1", b.sdp("a=sendonly\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if relayAddr(t, hold) != relayAddr(t, a1) {
		t.Errorf("a re-INVITE from the callee moved the caller's relay port: %v then %v", relayAddr(t, a1), relayAddr(t, hold))
	}
	if _, err := r.Answer(ctx, req("a1", "b1", a.sdp("a=recvonly\r\n"))); err != nil {
		t.Fatal(err)
	}
	b2 := newPhone(t, "127.0.0.1", "b1")
	resume, err := r.Offer(ctx, req("b1", "a1", b2.sdp("")))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = r.Answer(ctx, req("a1", "b1", a.sdp("")))
	a.send(relayAddr(t, resume), 7)
	if n, _ := b2.recv(300 * time.Millisecond); n != 7 {
		t.Errorf("the callee's new port got %d of 7", n)
	}
	if relayAddr(t, o1) == relayAddr(t, resume) {
		t.Error("the two sides share a relay port")
	}
}

// fakeNow is a clock the test moves.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func TestRelayTimeout(t *testing.T) {
	// The relay's clock starts 9 s behind the real one, which stamps the
	// packets: calls set up "9 s ago", packets sent now.
	clock := &fakeNow{t: time.Now().Add(-9 * time.Second)}
	var mu sync.Mutex
	var got []string
	r := newRelay(t, Config{Timeout: 10 * time.Second, HoldTimeout: time.Hour, Now: clock.now,
		OnTimeout: func(to media.Timeout) {
			mu.Lock()
			got = append(got, to.CallID+" "+to.CallerTag+" "+to.CalleeTag)
			mu.Unlock()
		}})
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")
	a, b := newPhone(t, "127.0.0.1", "a1"), newPhone(t, "127.0.0.1", "b1")
	req := func(id, from, to string, sdp []byte) *media.Request {
		return &media.Request{CallID: id, FromTag: from, ToTag: to, SDP: sdp, Source: lo, Local: lo, Advertise: lo}
	}
	call := func(id, extra string) (toA, toB netip.AddrPort) {
		o, err := r.Offer(ctx, req(id, "a1", "", a.sdp(extra)))
		if err != nil {
			t.Fatal(err)
		}
		an, err := r.Answer(ctx, req(id, "b1", "a1", b.sdp(extra)))
		if err != nil {
			t.Fatal(err)
		}
		return relayAddr(t, an), relayAddr(t, o)
	}
	// Still ringing: never timed out.
	if _, err := r.Offer(ctx, req("ringing", "a1", "", a.sdp(""))); err != nil {
		t.Fatal(err)
	}
	call("silent", "")
	call("held", "a=inactive\r\n")
	toA, toB := call("talking", "")
	oneA, _ := call("oneway", "") // the callee's phone died: only the caller talks
	a.send(toA, 3)
	b.send(toB, 3)
	a.send(oneA, 3)
	if n, _ := b.recv(300 * time.Millisecond); n != 6 {
		t.Fatalf("callee got %d of 6", n)
	}
	if n, _ := a.recv(100 * time.Millisecond); n != 3 {
		t.Fatalf("caller got %d of 3", n)
	}
	r.Expire()
	if r.Calls() != 5 {
		t.Fatalf("%d calls before any timeout", r.Calls())
	}
	clock.add(11 * time.Second) // 2 s after the packets
	r.Expire()
	mu.Lock()
	sort.Strings(got)
	if strings.Join(got, ", ") != "oneway a1 b1, silent a1 b1" {
		t.Errorf("timed out: %q, want oneway and silent", got)
	}
	mu.Unlock()
	if r.Calls() != 3 {
		t.Errorf("%d calls left, want ringing, held and talking", r.Calls())
	}
}

func TestRelayErrors(t *testing.T) {
	r := newRelay(t, Config{Plane: plane.Config{PortMin: 32000, PortMax: 32003}})
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")
	a := newPhone(t, "127.0.0.1", "a1")
	if _, err := r.Offer(ctx, &media.Request{CallID: "bad", FromTag: "a1", SDP: []byte("hello"), Local: lo, Advertise: lo}); !errors.Is(err, media.ErrBadSDP) {
		t.Errorf("bad SDP: %v", err)
	}
	if _, err := r.Answer(ctx, &media.Request{CallID: "none", FromTag: "b1", SDP: a.sdp(""), Local: lo, Advertise: lo}); !errors.Is(err, media.ErrNoSession) {
		t.Errorf("answer without offer: %v", err)
	}
	// Two port pairs: one call takes both.
	if _, err := r.Offer(ctx, &media.Request{CallID: "one", FromTag: "a1", SDP: a.sdp(""), Local: lo, Advertise: lo}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Offer(ctx, &media.Request{CallID: "two", FromTag: "a1", SDP: a.sdp(""), Local: lo, Advertise: lo})
	if !errors.Is(err, media.ErrNoPorts) {
		t.Fatalf("pool exhausted: %v", err)
	}
	if r.Calls() != 1 {
		t.Errorf("a refused call is kept: %d calls", r.Calls())
	}
	if _, err := r.Delete(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Offer(ctx, &media.Request{CallID: "two", FromTag: "a1", SDP: a.sdp(""), Local: lo, Advertise: lo}); err != nil {
		t.Errorf("ports not returned: %v", err)
	}
}

func TestRelayInterfaces(t *testing.T) {
	pub := netip.MustParseAddr("203.0.113.5")
	lo := netip.MustParseAddr("127.0.0.1")
	r := newRelay(t, Config{Interfaces: []Interface{{Bind: lo, Advertise: pub}}})
	a := newPhone(t, "127.0.0.1", "a1")
	offer, err := r.Offer(context.Background(), &media.Request{CallID: "i", FromTag: "a1", SDP: a.sdp(""), Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	if got := relayAddr(t, offer).Addr(); got != pub {
		t.Errorf("advertised %v, want %v", got, pub)
	}
}
