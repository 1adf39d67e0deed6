package server_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// The accounting tests make calls through the server with user agents
// (package ua) as phones and read the records from the store, as
// `hlas cdr` does.

const accT1 = 100 * time.Millisecond

func accPhone(t *testing.T, user, outbound string, onCall func(*ua.Call)) *ua.UA {
	t.Helper()
	u, err := ua.New(ua.Config{User: user, Server: outbound, T1: accT1, T2: 8 * accT1, T4: 10 * accT1, TimerD: 10 * accT1, OnCall: onCall})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func accStatus(err error) int {
	var se *ua.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestAccountingThroughTheProxy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Each callee behaves one way; calls are told apart by the user called.
	phones := map[string]func(*ua.Call){
		"answers": func(c *ua.Call) { _ = c.Answer(c.Context()) },
		"hangs-up": func(c *ua.Call) {
			_ = c.Answer(c.Context())
			time.Sleep(100 * time.Millisecond)
			_ = c.Hangup(c.Context())
		},
		"busy":  func(c *ua.Call) { _ = c.Reject(486, "") },
		"rings": func(c *ua.Call) { _ = c.Ring(c.Context()) },
	}
	locations := map[string][]string{}
	for name, behave := range phones {
		b := behave
		ph := accPhone(t, name+"@example.test", "", func(c *ua.Call) {
			b(c)
			<-c.Done() // returning early would answer the call 500
		})
		locations[name+"@example.test"] = []string{ph.Contact().URI.String()}
	}
	cfg := server.Config{
		Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"}, DataDir: dir,
		T1: accT1, T2: 8 * accT1, T4: 10 * accT1,
		Routing:    proxy.Config{TimerC: time.Second, Locations: locations},
		Auth:       auth.Config{OpenDomains: []string{"*"}},
		Accounting: acc.Config{Messages: true},
		DNS:        noDNS(t),
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
	defer s.Close()
	alice := accPhone(t, "alice@example.test", s.Addrs()[0].Addr.String(), nil)
	st, err := store.Open(ctx, store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	records := func(callee string) []store.CDR {
		rs, err := st.CDRs(ctx, store.CDRFilter{User: callee + "@example.test"})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	waitRecord := func(callee string) store.CDR {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if rs := records(callee); len(rs) > 0 {
				time.Sleep(50 * time.Millisecond) // a duplicate would show by now
				if rs = records(callee); len(rs) != 1 {
					t.Fatalf("%d records for %s: %+v", len(rs), callee, rs)
				}
				return rs[0]
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("no record for %s", callee)
		return store.CDR{}
	}

	t.Run("answered, the caller hangs up: the record is committed when the BYE's 200 arrives", func(t *testing.T) {
		call, err := alice.Call(ctx, "sip:answers@example.test")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := call.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		// No waiting: the 200 went upstream after the commit.
		rs := records("answers")
		if len(rs) != 1 {
			t.Fatalf("%d records right after the BYE's 200", len(rs))
		}
		r := rs[0]
		if r.Kind != acc.KindCall || r.Status != acc.StatusAnswered || r.Code != 200 || r.EndedBy != acc.ByCaller ||
			r.EndReason != acc.EndBye || r.CallID != call.Request().CallID || r.Duration < 150*time.Millisecond ||
			r.Branch != locations["answers@example.test"][0] || r.Caller != "alice@example.test" || r.Source == "" {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("answered, the callee hangs up", func(t *testing.T) {
		call, err := alice.Call(ctx, "sip:hangs-up@example.test")
		if err != nil {
			t.Fatal(err)
		}
		<-call.Done()
		r := waitRecord("hangs-up")
		if r.Status != acc.StatusAnswered || r.EndedBy != acc.ByCallee || r.EndReason != acc.EndBye {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("busy: 486", func(t *testing.T) {
		if _, err := alice.Call(ctx, "sip:busy@example.test"); accStatus(err) != 486 {
			t.Fatalf("got %v, want 486", err)
		}
		r := waitRecord("busy")
		if r.Status != acc.StatusFailed || r.Code != 486 || r.EndedBy != acc.ByCallee || !r.Answer.IsZero() {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("cancelled: 487", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := alice.Call(cctx, "sip:rings@example.test"); accStatus(err) != 487 {
			t.Fatalf("got %v, want 487", err)
		}
		r := waitRecord("rings")
		if r.Status != acc.StatusCancelled || r.Code != 487 || r.EndedBy != acc.ByCaller || r.EndReason != acc.EndCancel {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("no answer: Timer C, 408", func(t *testing.T) {
		if _, err := alice.Call(ctx, "sip:rings@example.test;timer=c"); accStatus(err) != 408 {
			t.Fatalf("got %v, want 408", err)
		}
		var r store.CDR
		deadline := time.Now().Add(10 * time.Second)
		for r.Code != 408 && time.Now().Before(deadline) {
			if rs := records("rings"); len(rs) == 2 {
				r = rs[1]
			}
			time.Sleep(5 * time.Millisecond)
		}
		if r.Status != acc.StatusFailed || r.Code != 408 || r.EndedBy != acc.ByProxy || r.EndReason != acc.EndTimeout {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("MESSAGE with accounting.messages", func(t *testing.T) {
		if _, err := alice.Message(ctx, "sip:answers@example.test", "text/plain", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		rs, err := st.CDRs(ctx, store.CDRFilter{Kind: acc.KindMessage})
		if err != nil || len(rs) != 1 || rs[0].Status != acc.StatusAnswered || rs[0].Callee != "answers@example.test" {
			t.Fatalf("records %+v, %v", rs, err)
		}
	})

	if n := s.Accounting().Calls(); n != 0 {
		t.Errorf("%d calls still tracked", n)
	}
}

func TestAccountingOff(t *testing.T) {
	off := false
	s, err := server.New(server.Config{Listen: []string{"udp:127.0.0.1:0"}, DataDir: t.TempDir(),
		Accounting: acc.Config{Enabled: &off}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Accounting() != nil {
		t.Fatal("accounting on with enabled: false")
	}
}

func TestAccountingFailedRegister(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := server.New(server.Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"}, DataDir: dir,
		T1: accT1, Accounting: acc.Config{FailedRegisters: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// No such subscriber: the first 401 is the challenge (not a failure);
	// the UA then tries its credentials twice, and both 401s are.
	u, err := ua.New(ua.Config{User: "mallory@example.test", Password: "guess", Server: s.Addrs()[0].Addr.String(), T1: accT1})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Register(ctx); accStatus(err) != 401 {
		t.Fatalf("REGISTER: %v, want 401", err)
	}
	st, err := store.Open(ctx, store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs, err := st.CDRs(ctx, store.CDRFilter{})
	if err != nil || len(rs) != 2 || rs[0].Kind != acc.KindRegister || rs[0].Code != 401 || rs[0].Status != acc.StatusFailed ||
		rs[0].Caller != "mallory@example.test" || rs[0].Source == "" {
		t.Fatalf("records %+v, %v", rs, err)
	}
}

// noDNS points the resolver at an in-process DNS server that knows no
// names, so that no lookup depends on the machine's resolver.
func noDNS(t *testing.T) resolve.Config {
	srv := resolvetest.Start(t, "invalid. 3600 IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 300")
	return resolve.Config{Servers: []string{srv.Addr}, HostsFile: resolve.HostsNone}
}
