package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/ua"
)

// The end-to-end tests run the real server with the proxy on loopback and
// user agents (package ua) as phones, with a static location service.

const t1 = 100 * time.Millisecond

// phone is a UA that answers incoming calls the way behave says.
type phone struct {
	*ua.UA
	mu    sync.Mutex
	calls []*ua.Call
	ended []string // why each incoming call ended
}

func (ph *phone) record(c *ua.Call) {
	ph.mu.Lock()
	ph.calls = append(ph.calls, c)
	ph.mu.Unlock()
	<-c.Done()
	why := "hung up"
	if err := c.Err(); err != nil {
		why = err.Error()
	}
	ph.mu.Lock()
	ph.ended = append(ph.ended, why)
	ph.mu.Unlock()
}

func (ph *phone) endings() []string {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	return append([]string(nil), ph.ended...)
}

// behaviours of a phone
func answerAfter(d time.Duration) func(*ua.Call) {
	return func(c *ua.Call) {
		_ = c.Ring(c.Context())
		select {
		case <-time.After(d):
			_ = c.Answer(c.Context())
		case <-c.Done():
		}
	}
}

func reject(code int) func(*ua.Call) {
	return func(c *ua.Call) { _ = c.Reject(code, "") }
}

func ringForever(c *ua.Call) { _ = c.Ring(c.Context()) }

func newPhone(t *testing.T, user, outbound string, behave func(*ua.Call)) *phone {
	t.Helper()
	ph := &phone{}
	cfg := ua.Config{User: user, Server: outbound, T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1}
	if behave != nil {
		cfg.OnCall = func(c *ua.Call) {
			behave(c)
			ph.record(c)
		}
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	u, err := ua.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ph.UA = u
	return ph
}

func contact(ph *phone) string { return ph.Contact().URI.String() }

// startProxy runs the server with routing on 127.0.0.1.
func startProxy(t *testing.T, routing proxy.Config) *server.Server {
	t.Helper()
	return startServer(t, server.Config{Routing: routing})
}

// startServer runs the server with cfg on 127.0.0.1: UDP and TCP
// listeners, domain example.test, short timers and open authentication
// unless cfg says otherwise.
func startServer(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	}
	if cfg.Domains == nil {
		cfg.Domains = []string{"example.test"}
	}
	if cfg.T1 == 0 {
		cfg.T1, cfg.T2, cfg.T4 = t1, 8*t1, 10*t1
	}
	if cfg.Auth.OpenDomains == nil {
		// The phones here have no subscriber accounts: routing is what
		// these tests are about (the 407 is tested in server and auth).
		cfg.Auth.OpenDomains = []string{"*"}
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func proxyAddr(s *server.Server) string { return listenAddr(s, "UDP") }

func listenAddr(s *server.Server, proto string) string {
	for _, a := range s.Addrs() {
		if a.Proto == proto {
			return a.Addr.String()
		}
	}
	return ""
}

// contexts reads hlas_proxy_contexts from the server's registry.
func contexts(t *testing.T, s *server.Server) float64 {
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "hlas_proxy_contexts" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no hlas_proxy_contexts")
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closeAll(t *testing.T, s *server.Server, phones ...*phone) {
	t.Helper()
	waitFor(t, "response contexts to end", func() bool { return contexts(t, s) == 0 })
	for _, ph := range phones {
		waitFor(t, "calls to end", func() bool { return ph.Stats().Calls == 0 })
		ph.Close()
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

func statusCode(err error) int {
	var se *ua.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestEndToEnd(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx := context.Background()

	t.Run("answer, then BYE along the recorded route", func(t *testing.T) {
		bob := newPhone(t, "bob@example.test", "", answerAfter(50*time.Millisecond))
		s := startProxy(t, proxy.Config{Locations: map[string][]string{"bob@example.test": {contact(bob)}}})
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		call, err := alice.Call(ctx, "sip:bob@example.test")
		if err != nil {
			t.Fatal(err)
		}
		if rs := call.Dialog().RouteSet(); len(rs) != 1 || !strings.Contains(rs[0].URI.String(), proxyAddr(s)) {
			t.Errorf("route set %v", rs)
		}
		if err := call.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "bob's call to end", func() bool { return len(bob.endings()) == 1 })
		if e := bob.endings()[0]; e != ua.ErrRemoteHangup.Error() {
			t.Errorf("bob's call ended: %s", e)
		}
		closeAll(t, s, alice, bob)
	})

	t.Run("busy: 486", func(t *testing.T) {
		bob := newPhone(t, "bob@example.test", "", reject(486))
		s := startProxy(t, proxy.Config{Locations: map[string][]string{"bob@example.test": {contact(bob)}}})
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		_, err := alice.Call(ctx, "sip:bob@example.test")
		if statusCode(err) != 486 {
			t.Fatalf("got %v, want 486", err)
		}
		closeAll(t, s, alice, bob)
	})

	t.Run("no answer: Timer C, 408", func(t *testing.T) {
		bob := newPhone(t, "bob@example.test", "", ringForever)
		s := startProxy(t, proxy.Config{TimerC: time.Second, Locations: map[string][]string{"bob@example.test": {contact(bob)}}})
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		_, err := alice.Call(ctx, "sip:bob@example.test")
		if statusCode(err) != 408 {
			t.Fatalf("got %v, want 408", err)
		}
		waitFor(t, "bob's call to be cancelled", func() bool { return len(bob.endings()) == 1 })
		closeAll(t, s, alice, bob)
	})

	t.Run("caller cancels: 487", func(t *testing.T) {
		bob := newPhone(t, "bob@example.test", "", ringForever)
		s := startProxy(t, proxy.Config{Locations: map[string][]string{"bob@example.test": {contact(bob)}}})
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := alice.Call(cctx, "sip:bob@example.test")
		if !errors.Is(err, context.DeadlineExceeded) || statusCode(err) != 487 {
			t.Fatalf("got %v, want the deadline and 487", err)
		}
		waitFor(t, "bob's call to be cancelled", func() bool { return len(bob.endings()) == 1 })
		if e := bob.endings()[0]; e != ua.ErrCancelled.Error() {
			t.Errorf("bob's call ended: %s", e)
		}
		closeAll(t, s, alice, bob)
	})

	t.Run("parallel forking: the first to answer wins, the other is cancelled", func(t *testing.T) {
		desk := newPhone(t, "bob@example.test", "", answerAfter(time.Hour))
		mobile := newPhone(t, "bob@example.test", "", answerAfter(100*time.Millisecond))
		s := startProxy(t, proxy.Config{Locations: map[string][]string{"bob@example.test": {contact(desk), contact(mobile)}}})
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		call, err := alice.Call(ctx, "sip:bob@example.test")
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the desk phone to be cancelled", func() bool { return len(desk.endings()) == 1 })
		if e := desk.endings()[0]; e != ua.ErrCancelled.Error() {
			t.Errorf("desk phone: %s", e)
		}
		_ = call.Hangup(ctx)
		waitFor(t, "the mobile's call to end", func() bool { return len(mobile.endings()) == 1 })
		closeAll(t, s, alice, desk, mobile)
	})

	t.Run("sequential forking by q: the lower q after the higher fails", func(t *testing.T) {
		desk := newPhone(t, "bob@example.test", "", reject(480))
		mobile := newPhone(t, "bob@example.test", "", answerAfter(0))
		s := startProxy(t, proxy.Config{Locations: map[string][]string{"bob@example.test": {
			contact(desk) + ";q=1", contact(mobile) + ";q=0.4"}}})
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		call, err := alice.Call(ctx, "sip:bob@example.test")
		if err != nil {
			t.Fatal(err)
		}
		_ = call.Hangup(ctx)
		waitFor(t, "both phones", func() bool { return len(desk.endings()) == 1 && len(mobile.endings()) == 1 })
		closeAll(t, s, alice, desk, mobile)
	})

	t.Run("redirect mode: 302, the caller follows it", func(t *testing.T) {
		bob := newPhone(t, "bob@example.test", "", answerAfter(0))
		s := startProxy(t, proxy.Config{Mode: proxy.Redirect, Locations: map[string][]string{
			"bob@127.0.0.1": {contact(bob)}}})
		alice := newPhone(t, "alice@example.test", "", nil)
		call, err := alice.Call(ctx, "sip:bob@"+proxyAddr(s))
		if err != nil {
			t.Fatal(err)
		}
		if got := call.Request().URI.String(); got != contact(bob) {
			t.Errorf("INVITE went to %s, want %s", got, contact(bob))
		}
		_ = call.Hangup(ctx)
		closeAll(t, s, alice, bob)
	})

	t.Run("gateway failover: 503 from the first, the second answers", func(t *testing.T) {
		gw1 := newPhone(t, "gw@gw1.test", "", reject(503))
		gw2 := newPhone(t, "gw@gw2.test", "", answerAfter(0))
		s := startProxy(t, proxy.Config{
			Gateways: map[string][]proxy.Gateway{"pstn": {
				{URI: "sip:" + gw1.Addr().String(), Priority: 1},
				{URI: "sip:" + gw2.Addr().String(), Priority: 2},
			}},
			Rules: []proxy.Rule{{Prefix: "0", Action: proxy.ActionForward, Gateways: "pstn"}},
		})
		alice := newPhone(t, "alice@example.test", proxyAddr(s), nil)
		call, err := alice.Call(ctx, "sip:0123456@example.test")
		if err != nil {
			t.Fatal(err)
		}
		_ = call.Hangup(ctx)
		waitFor(t, "both gateways", func() bool { return len(gw1.endings()) == 1 && len(gw2.endings()) == 1 })
		closeAll(t, s, alice, gw1, gw2)
	})

	t.Run("TCP caller, UDP callee: two Record-Route entries", func(t *testing.T) {
		bob := newPhone(t, "bob@example.test", "", answerAfter(0))
		s := startProxy(t, proxy.Config{Locations: map[string][]string{"bob@example.test": {contact(bob)}}})
		cfg := ua.Config{User: "alice@example.test", Server: listenAddr(s, "TCP"), Transport: "tcp", T1: t1}
		alice, err := ua.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		call, err := alice.Call(ctx, "sip:bob@example.test")
		if err != nil {
			t.Fatal(err)
		}
		if rs := call.Dialog().RouteSet(); len(rs) != 2 {
			t.Errorf("route set %v", rs)
		}
		if err := call.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "bob's call to end", func() bool { return len(bob.endings()) == 1 })
		closeAll(t, s, &phone{UA: alice}, bob)
	})
	_ = fmt.Sprint
}
