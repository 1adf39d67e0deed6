package resolve_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

// clock is a settable clock for the blocklist's expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// responder is a tiny SIP element on loopback UDP answering every request
// with 200 OK.
func responder(t *testing.T) (port int, served func() int) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var mu sync.Mutex
	n := 0
	go func() {
		buf := make([]byte, 65535)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := sip.Parse(buf[:k])
			req, ok := msg.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			mu.Lock()
			n++
			mu.Unlock()
			_, _ = pc.WriteTo([]byte(sip.NewResponse(req, 200, "").String()), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// deadPort returns a loopback UDP port nothing listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	return port
}

// errTimeout stands for the transaction layer's Timer F.
var errTimeout = errors.New("timeout")

// sendOPTIONS sends one OPTIONS to target and waits up to wait for a
// response; not hearing back stands in for a transaction timeout.
func sendOPTIONS(t *testing.T, target resolve.Target, wait time.Duration) (int, error) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	local := pc.LocalAddr().String()
	req := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:test@example.test>;tag=1\r\nTo: <sip:example.test>\r\n"+
		"Call-ID: failover-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		target.Addr, local, time.Now().UnixNano(), time.Now().UnixNano())
	if _, err := pc.WriteTo([]byte(req), net.UDPAddrFromAddrPort(target.Addr)); err != nil {
		return 0, err
	}
	_ = pc.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 0, errTimeout
		}
		return 0, err
	}
	msg, err := sip.Parse(buf[:n])
	if err != nil {
		return 0, err
	}
	return msg.(*sip.Response).StatusCode, nil
}

// RFC 3263 §4.3: a proxy forwards a call to a domain whose first SRV
// target is down. The request to target 1 (a dead UDP port) times out; the
// proxy reports it with Fail and the next target (a live responder)
// answers. The dead target is then avoided for BlocklistFor: later
// resolutions put it last, not gone, and after the time it comes back.
func TestFailoverDeadFirstSRVTarget(t *testing.T) {
	livePort, served := responder(t)
	dead := deadPort(t)
	srv := resolvetest.Start(t, fmt.Sprintf(`
$ORIGIN failover.test.
@          IN SOA ns hostmaster 1 3600 600 86400 300
_sip._udp  IN SRV 0  10 %d dead
_sip._udp  IN SRV 10 10 %d live
dead       IN A   127.0.0.1
live       IN A   127.0.0.1
`, dead, livePort))
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r, err := resolve.New(resolve.Config{Servers: []string{srv.Addr}, Clock: clk, BlocklistFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	uri, _ := sip.ParseURI("sip:bob@failover.test")
	ts, err := r.Resolve(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	deadAP := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(dead))
	liveAP := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(livePort))

	var tried []netip.AddrPort
	code := 0
	for target, ok := ts.Next(); ok; target, ok = ts.Next() {
		tried = append(tried, target.Addr)
		c, err := sendOPTIONS(t, target, 300*time.Millisecond)
		switch {
		case errors.Is(err, errTimeout):
			ts.Fail(target, resolve.ReasonTimeout)
			continue
		case err != nil:
			ts.Fail(target, resolve.ReasonTransport)
			continue
		case c == 503:
			ts.Fail(target, resolve.ReasonUnavailable)
			continue
		}
		ts.Succeed(target)
		code = c
		break
	}
	if code != 200 || !slices.Equal(tried, []netip.AddrPort{deadAP, liveAP}) {
		t.Fatalf("tried %v, final %d; want the dead target, then 200 from the live one", tried, code)
	}
	if served() != 1 {
		t.Errorf("responder served %d requests, want 1", served())
	}
	if st := r.Stats(); st.TargetFailures != 1 || st.Blocked != 1 {
		t.Errorf("Stats() = %+v, want 1 target failure, 1 blocked", st)
	}

	// The next call goes to the live target first; the dead one is last.
	order := func() []netip.AddrPort {
		ts, err := r.Resolve(ctx, uri)
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.AddrPort
		for target, ok := ts.Next(); ok; target, ok = ts.Next() {
			out = append(out, target.Addr)
		}
		return out
	}
	if got := order(); !slices.Equal(got, []netip.AddrPort{liveAP, deadAP}) {
		t.Errorf("while blocked: %v, want live then dead", got)
	}
	clk.Advance(time.Minute)
	if got := order(); !slices.Equal(got, []netip.AddrPort{deadAP, liveAP}) {
		t.Errorf("after BlocklistFor: %v, want the SRV order back", got)
	}
}

// RFC 3263 §4.3 with every target failed: they are still tried, in order
// (moved to the end, never removed); a 503's Retry-After sets how long.
func TestFailoverAllBlocked(t *testing.T) {
	srv := resolvetest.Start(t, `
$ORIGIN all.test.
@          IN SOA ns hostmaster 1 3600 600 86400 300
_sip._udp  IN SRV 0 0 5060 a
_sip._udp  IN SRV 1 0 5060 b
_sip._udp  IN SRV 2 0 5060 c
a IN A 192.0.2.1
b IN A 192.0.2.2
c IN A 192.0.2.3
`)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r, err := resolve.New(resolve.Config{Servers: []string{srv.Addr}, Clock: clk, BlocklistFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	uri, _ := sip.ParseURI("sip:bob@all.test")
	ts, err := r.Resolve(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ts.Next()
	ts.Fail(a, resolve.ReasonTransport)
	b, _ := ts.Next()
	ts.FailFor(b, resolve.ReasonUnavailable, 10*time.Second) // 503 Retry-After: 10
	c, _ := ts.Next()
	ts.Fail(c, resolve.ReasonTimeout)
	if _, ok := ts.Next(); ok {
		t.Fatal("Next after every target was returned: ok")
	}
	addrs := func(ts []resolve.Target) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Addr.Addr().String())
		}
		return out
	}
	ts, _ = r.Resolve(context.Background(), uri)
	if got := addrs(ts.All()); !slices.Equal(got, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}) {
		t.Errorf("all blocked: %v, want every target in SRV order", got)
	}
	clk.Advance(10 * time.Second) // b's Retry-After is over
	ts, _ = r.Resolve(context.Background(), uri)
	if got := addrs(ts.All()); !slices.Equal(got, []string{"192.0.2.2", "192.0.2.1", "192.0.2.3"}) {
		t.Errorf("after b's Retry-After: %v, want b first", got)
	}
	// A blocked target that worked after all comes off the blocklist.
	first, _ := ts.Next()
	ts.Succeed(first)
	second, _ := ts.Next()
	ts.Succeed(second)
	ts, _ = r.Resolve(context.Background(), uri)
	if got := addrs(ts.All()); !slices.Equal(got, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}) || r.Stats().Blocked != 1 {
		t.Errorf("after Succeed: %v, blocked %d", got, r.Stats().Blocked)
	}
}

// The blocklist holds at most BlocklistSize targets.
func TestBlocklistBounded(t *testing.T) {
	srv := resolvetest.Start(t, "")
	r, err := resolve.New(resolve.Config{Servers: []string{srv.Addr}, BlocklistSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		uri, _ := sip.ParseURI(fmt.Sprintf("sip:x@192.0.2.%d", i))
		ts, err := r.Resolve(context.Background(), uri)
		if err != nil {
			t.Fatal(err)
		}
		target, _ := ts.Next()
		ts.Fail(target, resolve.ReasonTimeout)
	}
	if st := r.Stats(); st.Blocked != 2 || st.TargetFailures != 5 {
		t.Errorf("Stats() = %+v, want 2 blocked of 5 failures", st)
	}
}

func Example() {
	zone, _ := os.ReadFile("testdata/rfc3263.zone")
	srv, err := resolvetest.NewServer(string(zone))
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	r, _ := resolve.New(resolve.Config{Servers: []string{srv.Addr}})
	uri, _ := sip.ParseURI("sips:alice@example.test")
	ts, _ := r.Resolve(context.Background(), uri)
	for _, t := range ts.All() {
		fmt.Printf("%s  (%s)\n", t, t.Explain())
	}
	// Output:
	// tls 192.0.2.10:5061  (NAPTR 10 60 "s" SIPS+D2T → SRV 0 5 5061 sip1.example.test. → A 192.0.2.10)
	// tls [2001:db8::10]:5061  (NAPTR 10 60 "s" SIPS+D2T → SRV 0 5 5061 sip1.example.test. → AAAA 2001:db8::10)
}
