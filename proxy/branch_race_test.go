package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transport"
)

// slowEnv: bob has two contacts of equal q, one behind a host name whose
// lookup blocks until release is closed, one an IP literal.
func slowEnv(t *testing.T) (*testEnv, chan struct{}) {
	release := make(chan struct{})
	cfg := Config{Locations: map[string][]string{
		"bob@example.test": {"sip:bob@slow.test", "sip:bob@198.51.100.20:5062"},
	}}
	e := newTestEnv(t, cfg, func(env *Env) {
		env.Resolver = ResolverFunc(func(ctx context.Context, u sip.URI) (Hops, error) {
			if u.Hostname() == "slow.test" {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return NewHopList(Hop{Proto: transport.UDP, Addr: netip.MustParseAddrPort("198.51.100.30:5060"), Host: "slow.test"}), nil
			}
			a, _ := netip.ParseAddr(u.Hostname())
			return NewHopList(Hop{Proto: transport.UDP, Addr: netip.AddrPortFrom(a, uint16(u.Port)), Host: a.String()}), nil
		})
	})
	return e, release
}

// waitSent waits for the requests the background lookups send.
func waitSent(t *testing.T, e *testEnv, n int) []*sip.Request {
	t.Helper()
	var got []*sip.Request
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		got = append(got, e.net.requests(t)...)
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("sent %q, want %d requests", uris(got), n)
	return nil
}

// A branch whose lookup is still running when another branch answers 2xx
// must not go out afterwards (RFC 3261 §16.7 step 10: the other branches
// are cancelled; no new ones start), and the response context must end.
func TestLookupBranchNotSentAfter2xx(t *testing.T) {
	e, release := slowEnv(t)
	tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
	fast := waitSent(t, e, 1)[0]
	e.answer(fast, 200, "b1")
	if got := tx.codes(); got != "100 200" {
		t.Fatalf("caller got %q", got)
	}
	close(release)
	e.p.Close() // the lookup has ended and its branch acted
	if got := uris(e.net.requests(t)); strings.Contains(got, "INVITE") {
		t.Errorf("after the 200 the proxy still sent %q to the branch whose lookup was slow", got)
	}
	if n := e.p.Pending(); n != 0 {
		t.Errorf("Pending() = %d after the call was answered and every lookup ended", n)
	}
}

// The same after a 6xx (§16.7 step 5: a 6xx ends the search): the 603 goes
// upstream as soon as the slow lookup ends, not after Timer C.
func TestLookupBranchNotSentAfter6xx(t *testing.T) {
	e, release := slowEnv(t)
	tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
	fast := waitSent(t, e, 1)[0]
	e.answer(fast, 603, "b1")
	close(release)
	e.p.Close()
	if got := uris(e.net.requests(t)); strings.Contains(got, "INVITE") {
		t.Errorf("after the 603 the proxy still sent %q", got)
	}
	if got := tx.codes(); got != "100 603" {
		t.Errorf("caller got %q, want \"100 603\" once the lookup ended", got)
	}
}

// gatedNet holds the first write to gate's address until open is closed.
type gatedNet struct {
	*fakeNet
	gate    netip.AddrPort
	entered chan struct{}
	open    chan struct{}
	held    bool
}

func (n *gatedNet) WriteTo(proto string, local, remote netip.AddrPort, data []byte) error {
	if remote == n.gate && !n.held {
		n.held = true
		close(n.entered)
		<-n.open
	}
	return n.fakeNet.WriteTo(proto, local, remote, data)
}

// A CANCEL from the caller that arrives while a branch's INVITE is being
// handed to the transaction layer (on a lookup goroutine, or after failover
// on a timer goroutine) finds no client transaction yet; the CANCEL must
// still go out once the transaction exists (RFC 3261 §16.10), or the
// callee rings on and its 200 reaches the caller after the 487.
func TestCancelDuringBranchSend(t *testing.T) {
	callee := netip.MustParseAddrPort("198.51.100.30:5060")
	var g *gatedNet
	e := newTestEnv(t, Config{Locations: map[string][]string{"bob@example.test": {"sip:bob@far.test"}}}, func(env *Env) {
		g = &gatedNet{fakeNet: env.Network.(*fakeNet), gate: callee, entered: make(chan struct{}), open: make(chan struct{})}
		env.Network = g
		env.Resolver = ResolverFunc(func(ctx context.Context, u sip.URI) (Hops, error) {
			return NewHopList(Hop{Proto: transport.UDP, Addr: callee, Host: "far.test"}), nil
		})
	})
	tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
	<-g.entered // the lookup goroutine is sending the INVITE
	tx.cancel()
	close(g.open)
	e.p.Close()
	inv := e.net.requests(t)
	if len(inv) != 1 {
		t.Fatalf("sent %q", uris(inv))
	}
	e.answer(inv[0], 180, "b1")
	if got := uris(e.net.requests(t)); got != "CANCEL sip:bob@far.test" {
		t.Errorf("after the caller's CANCEL and the callee's 180, the proxy sent %q, want a CANCEL", got)
	}
	if got := tx.codes(); got != "100 487" {
		t.Errorf("caller got %q, want \"100 487\"", got)
	}
}

// A registration over TCP whose connection has closed falls back to
// resolving the contact's host (hopsNow uses a flow only while
// flowUsable): that lookup must not run on the caller's goroutine, a
// server worker.
func TestClosedStreamFlowResolvesOffWorker(t *testing.T) {
	release := make(chan struct{})
	flow := Flow{Proto: transport.TCP, Remote: netip.MustParseAddrPort("203.0.113.40:40123")}
	e := newTestEnv(t, Config{}, func(env *Env) {
		env.Locator = LocatorFunc(func(ctx context.Context, aor sip.URI) ([]Target, error) {
			u, _ := sip.ParseURI("sip:bob@phone.test;transport=tcp")
			return []Target{{URI: u, Q: 1, Flow: flow}}, nil
		})
		env.Resolver = ResolverFunc(func(ctx context.Context, u sip.URI) (Hops, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, errors.New("no such host")
		})
	})
	done := make(chan struct{})
	go func() {
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Error("the worker waits on the Resolver for a target whose stream flow has closed")
	}
	close(release)
	<-done
	e.p.Close()
}

// The ENUM rule must not ask the DNS on the caller's goroutine (a server
// worker): a slow or silent DNS server would hold up every call queued on
// that worker for up to resolveTimeout.
func TestENUMLookupDoesNotBlockCaller(t *testing.T) {
	hole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	dns, err := resolve.New(resolve.Config{Servers: []string{hole.LocalAddr().String()}, Timeout: 2 * time.Second,
		Attempts: 1, HostsFile: resolve.HostsNone})
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, Config{Rules: []Rule{{Prefix: "+", Action: ActionENUM}}}, func(env *Env) { env.DNS = dns })
	done := make(chan struct{})
	go func() {
		e.serve(request(t, sip.INVITE, "sip:+4420555@example.test"))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond):
		t.Error("the worker waits on the DNS server for the ENUM lookup")
		<-done
	}
}

// A hop silent past the rule's timeout is passed over (onSilence: a new
// attempt to the next hop of the same branch). When the silent hop then
// answers 2xx after all, the branch's current attempt must be cancelled
// like the other pending branches, or the second hop rings on (its Timer C
// stopped) and its 200 is a second answer upstream.
func TestStale2xxCancelsCurrentAttempt(t *testing.T) {
	cfg := Config{
		Routes: map[string][]string{"peer.test": {"udp:203.0.113.9:5060", "udp:203.0.113.10:5060"}},
		Rules:  []Rule{{Domain: "peer.test", Action: ActionResolve, Timeout: 2 * time.Second}},
	}
	e := newTestEnv(t, cfg, nil)
	e.serve(request(t, sip.INVITE, "sip:x@peer.test"))
	first := e.net.requests(t)
	if len(first) != 1 {
		t.Fatalf("sent %q", uris(first))
	}
	e.clock.Advance(2100 * time.Millisecond) // the first hop is silent
	var second *sip.Request
	for _, r := range e.net.requests(t) {
		if r.Method == sip.INVITE {
			second = r
		}
	}
	if second == nil {
		t.Fatal("no failover to the second hop")
	}
	e.answer(first[0], 200, "h1") // the first hop answers after all
	e.answer(second, 180, "h2")
	if got := uris(e.net.requests(t)); got != "CANCEL sip:x@peer.test" {
		t.Errorf("after the first hop's 200 and the second's 180 the proxy sent %q, want a CANCEL to the second", got)
	}
}

// Work started once Close has begun (a transaction timer firing during
// shutdown) runs on the caller's goroutine: Close's Wait never races a
// new goroutine's Add, and nothing outlives it.
func TestBackgroundAfterClose(t *testing.T) {
	e := newTestEnv(t, Config{}, nil)
	e.p.Close()
	ran := false
	e.p.background(func() { ran = true })
	if !ran {
		t.Error("work started after Close did not run on the caller's goroutine")
	}
	e.p.Close() // twice is harmless
}
