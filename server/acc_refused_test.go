package server_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// Calls the server refuses itself, without forwarding them, are call
// attempts too: each gets one record with its final code; the digest
// challenge before them gets none.
func TestAccountingRefusedCalls(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddUser(ctx, auth.NewUser("alice", "example.test", "secret")); err != nil {
		t.Fatal(err)
	}
	bob := accPhone(t, "bob@example.test", "", func(c *ua.Call) {
		_ = c.Answer(c.Context())
		<-c.Done()
	})
	cfg := server.Config{
		Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"}, DataDir: dir,
		T1: accT1, T2: 8 * accT1, T4: 10 * accT1,
		Routing: proxy.Config{
			Locations: map[string][]string{"bob@example.test": {bob.Contact().URI.String()}},
			Rules: []proxy.Rule{
				{Prefix: "488", Action: proxy.ActionReject, Code: 488},
				{Prefix: "302", Action: proxy.ActionRedirect, Targets: []string{"sip:bob@192.0.2.9"}},
			},
		},
		DNS: noDNS(t),
	}
	s, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srvAddr := s.Addrs()[0].Addr.String()
	newUA := func(user, authUser string) *ua.UA {
		u, err := ua.New(ua.Config{User: user, AuthUser: authUser, Password: "secret", Server: srvAddr,
			T1: accT1, T2: 8 * accT1, T4: 10 * accT1, TimerD: 10 * accT1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return u
	}
	alice := newUA("alice@example.test", "")

	// records returns the records whose callee is callee, after a pause
	// long enough for a duplicate to show.
	records := func(t *testing.T, callee string) []store.CDR {
		t.Helper()
		time.Sleep(100 * time.Millisecond)
		rs, err := st.CDRs(ctx, store.CDRFilter{User: callee})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	// one checks that callee has exactly one record, committed before
	// the caller saw the final response.
	one := func(t *testing.T, callee string) store.CDR {
		t.Helper()
		rs, err := st.CDRs(ctx, store.CDRFilter{User: callee})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 {
			t.Fatalf("%d records for %s right after the final response: %+v", len(rs), callee, rs)
		}
		if rs = records(t, callee); len(rs) != 1 {
			t.Fatalf("%d records for %s: %+v", len(rs), callee, rs)
		}
		return rs[0]
	}

	t.Run("unknown user, after the 407 challenge: one record, 404", func(t *testing.T) {
		if _, err := alice.Call(ctx, "sip:nobody@example.test"); accStatus(err) != 404 {
			t.Fatalf("got %v, want 404", err)
		}
		r := one(t, "nobody@example.test")
		if r.Kind != acc.KindCall || r.Status != acc.StatusFailed || r.Code != 404 || r.EndedBy != acc.ByProxy ||
			r.EndReason != acc.EndRejected || r.User != "alice@example.test" || r.Caller != "alice@example.test" ||
			r.Source == "" || r.CallID == "" || !r.Answer.IsZero() {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("407 challenge, then the authenticated INVITE is answered: one record", func(t *testing.T) {
		call, err := alice.Call(ctx, "sip:bob@example.test")
		if err != nil {
			t.Fatal(err)
		}
		if err := call.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		r := one(t, "bob@example.test")
		if r.Status != acc.StatusAnswered || r.Code != 200 || r.EndedBy != acc.ByCaller || r.EndReason != acc.EndBye ||
			r.User != "alice@example.test" || r.CallID != call.Request().CallID {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("caller-ID spoofing: 403", func(t *testing.T) {
		// Alice's good credentials in an INVITE From carol: the
		// authentication step refuses them (RFC 3261 §10.3 step 4), so
		// nobody is authenticated.
		mallory := newUA("carol@example.test", "alice")
		if _, err := mallory.Call(ctx, "sip:spoofed@example.test"); accStatus(err) != 403 {
			t.Fatalf("got %v, want 403", err)
		}
		r := one(t, "spoofed@example.test")
		if r.Code != 403 || r.User != "" || r.Caller != "carol@example.test" || r.EndedBy != acc.ByProxy {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("reject rule: 488", func(t *testing.T) {
		if _, err := alice.Call(ctx, "sip:48800@example.test"); accStatus(err) != 488 {
			t.Fatalf("got %v, want 488", err)
		}
		if r := one(t, "48800@example.test"); r.Code != 488 || r.EndReason != acc.EndRejected {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("redirect rule: 302, and the caller's next try is its own attempt", func(t *testing.T) {
		// The UA follows the 302 to sip:bob@192.0.2.9 (a new CSeq), which
		// the server does not route: 404.
		if _, err := alice.Call(ctx, "sip:30200@example.test"); accStatus(err) != 404 {
			t.Fatalf("got %v, want 404 after the redirect", err)
		}
		rs := records(t, "30200@example.test")
		if len(rs) != 2 {
			t.Fatalf("%d records: %+v", len(rs), rs)
		}
		// Both may start in the same millisecond, where the store's order
		// (start, then random id) is arbitrary.
		if rs[0].Code == 404 {
			rs[0], rs[1] = rs[1], rs[0]
		}
		if r := rs[0]; r.Code != 302 || r.EndReason != acc.EndRedirected || r.Status != acc.StatusFailed ||
			r.RequestURI != "sip:30200@example.test" {
			t.Fatalf("record %+v", r)
		}
		if r := rs[1]; r.Code != 404 || r.EndReason != acc.EndRejected || r.RequestURI != "sip:bob@192.0.2.9" ||
			r.CallID != rs[0].CallID {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("Max-Forwards 0: 483, a retransmission makes no second record", func(t *testing.T) {
		conn, err := net.Dial("udp", srvAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		local := conn.LocalAddr().String()
		inv := strings.ReplaceAll(fmt.Sprintf("INVITE sip:hops@example.test SIP/2.0\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bKmf0;rport\nMax-Forwards: 0\n"+
			"From: <sip:dave@elsewhere.test>;tag=d1\nTo: <sip:hops@example.test>\nCall-ID: mf0@test\n"+
			"CSeq: 1 INVITE\nContact: <sip:dave@%s>\nUser-Agent: raw\nContent-Length: 0\n\n", local, local), "\n", "\r\n")
		buf := make([]byte, 4096)
		for i := range 2 { // the same INVITE twice: the first 483 "lost"
			if i > 0 {
				time.Sleep(accT1) // the retransmission timer (T1)
			}
			if _, err := conn.Write([]byte(inv)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("INVITE %d: %v", i+1, err)
			}
			if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 483 ") {
				t.Fatalf("got %q", buf[:n])
			}
		}
		r := one(t, "hops@example.test")
		if r.Code != 483 || r.CallID != "mf0@test" || r.User != "" || r.UserAgent != "raw" ||
			r.Source != "udp:"+local {
			t.Fatalf("record %+v", r)
		}
	})

	if n := s.Accounting().Calls(); n != 0 {
		t.Errorf("%d calls still tracked", n)
	}
	// The challenges made no records: one per attempt.
	if rs, err := st.CDRs(ctx, store.CDRFilter{}); err != nil || len(rs) != 7 {
		t.Fatalf("%d records in all, want 7: %+v, %v", len(rs), rs, err)
	}
}
