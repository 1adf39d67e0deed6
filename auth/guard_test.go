package auth

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip"
)

// fakeGuard records what it is told and delays by delay.
type fakeGuard struct {
	mu    sync.Mutex
	seen  []string // "src user@domain outcome/reason"
	delay time.Duration
}

func (g *fakeGuard) Observe(src netip.Addr, username, domain string, r Result) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen = append(g.seen, src.String()+" "+username+"@"+domain+" "+outcomeLabels[r.Outcome]+"/"+r.Reason)
	if r.Outcome == Accepted {
		return 0
	}
	return g.delay
}

// sourcedRecorder is a Responder that knows its source, as the server's
// transactions do, and is safe to answer from a timer.
type sourcedRecorder struct {
	mu  sync.Mutex
	src netip.AddrPort
	res []*sip.Response
	got chan struct{}
}

func (r *sourcedRecorder) Source() netip.AddrPort { return r.src }
func (r *sourcedRecorder) Respond(res *sip.Response) error {
	r.mu.Lock()
	r.res = append(r.res, res)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
	return nil
}
func (r *sourcedRecorder) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.res) }

func newGuardFixture(t *testing.T, g *fakeGuard, maxDelayed int) (*Authenticator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := New(Config{}, Env{Secret: secret, Users: newMemUsers(NewUser("alice", "example.test", "secret")),
		Registerer: reg, Guard: g, MaxDelayed: maxDelayed})
	if err != nil {
		t.Fatal(err)
	}
	return a, reg
}

func TestGuardSeesOutcomes(t *testing.T) {
	g := &fakeGuard{}
	a, _ := newGuardFixture(t, g, 0)
	src := netip.MustParseAddrPort("192.0.2.9:5060")
	ctx := context.Background()

	first := &sourcedRecorder{src: src, got: make(chan struct{}, 1)}
	req := register(t, "alice@example.test")
	if _, ok := a.Authenticate(ctx, first, req, Origin, "alice", "example.test"); ok || first.count() != 1 {
		t.Fatalf("no credentials: ok=%v, %d responses", ok, first.count())
	}
	ch := first.res[0]
	wrong := register(t, "alice@example.test", "Authorization: "+answer(t, ch, Origin, "MD5", "alice", "guess", req, 1)+"\r\n")
	a.Authenticate(ctx, &sourcedRecorder{src: src}, wrong, Origin, "alice", "example.test")
	unknown := register(t, "zed@example.test", "Authorization: "+answer(t, ch, Origin, "MD5", "zed", "x", req, 1)+"\r\n")
	a.Authenticate(ctx, &sourcedRecorder{src: src}, unknown, Origin, "zed", "example.test")
	good := register(t, "alice@example.test", "Authorization: "+answer(t, ch, Origin, "MD5", "alice", "secret", req, 1)+"\r\n")
	if _, ok := a.Authenticate(ctx, &sourcedRecorder{src: src}, good, Origin, "alice", "example.test"); !ok {
		t.Fatal("good credentials refused")
	}
	want := []string{
		"192.0.2.9 alice@example.test challenged/" + ReasonNoCredentials,
		"192.0.2.9 alice@example.test challenged/" + ReasonWrongPassword,
		"192.0.2.9 zed@example.test challenged/" + ReasonUnknownUser,
		"192.0.2.9 alice@example.test accepted/",
	}
	if len(g.seen) != len(want) {
		t.Fatalf("guard saw %q, want %q", g.seen, want)
	}
	for i := range want {
		if g.seen[i] != want[i] {
			t.Errorf("guard saw[%d] %q, want %q", i, g.seen[i], want[i])
		}
	}
}

func TestGuardDelaysChallenge(t *testing.T) {
	g := &fakeGuard{delay: time.Hour}
	a, reg := newGuardFixture(t, g, 1)
	src := netip.MustParseAddrPort("192.0.2.9:5060")
	held := &sourcedRecorder{src: src, got: make(chan struct{}, 1)}
	a.Authenticate(context.Background(), held, register(t, "alice@example.test"), Origin, "alice", "example.test")
	if held.count() != 0 {
		t.Fatal("a challenge the guard delays by an hour was sent at once")
	}
	// The bound (1) is taken: the next delayed response is dropped.
	dropped := &sourcedRecorder{src: src, got: make(chan struct{}, 1)}
	a.Authenticate(context.Background(), dropped, register(t, "alice@example.test"), Origin, "alice", "example.test")
	if n := testutil.ToFloat64(a.met.delayDropped); n != 1 {
		t.Fatalf("delay_dropped_total = %v, want 1", n)
	}
	_ = reg

	// A short delay: the challenge arrives, later, from the timer.
	g2 := &fakeGuard{delay: time.Millisecond}
	a2, _ := newGuardFixture(t, g2, 0)
	later := &sourcedRecorder{src: src, got: make(chan struct{}, 1)}
	a2.Authenticate(context.Background(), later, register(t, "alice@example.test"), Origin, "alice", "example.test")
	select {
	case <-later.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the delayed challenge never came")
	}
	if res := later.res[0]; res.StatusCode != 401 || res.Get("WWW-Authenticate") == "" {
		t.Fatalf("delayed response: %d without a challenge", res.StatusCode)
	}
}

// A negative delay from the Guard drops the response: the source was
// banned for this request.
func TestGuardDropsResponse(t *testing.T) {
	a, _ := newGuardFixture(t, &fakeGuard{delay: -1}, 0)
	rec := &sourcedRecorder{src: netip.MustParseAddrPort("192.0.2.9:5060"), got: make(chan struct{}, 1)}
	if _, ok := a.Authenticate(context.Background(), rec, register(t, "alice@example.test"), Origin, "alice", "example.test"); ok || rec.count() != 0 {
		t.Fatalf("ok=%v, %d responses sent; want none", ok, rec.count())
	}
}
