package server

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// alice calls bob through the server: the API lists the call ringing,
// then answered; DELETE ends it with a BYE to each phone; its CDR says
// the proxy ended it for the API. A second call is hung up while it
// rings: alice gets 487, the CDR says cancelled.
func TestAPICallsHangup(t *testing.T) {
	ctx := context.Background()
	const t1 = 100 * time.Millisecond
	answer := make(chan bool, 4)
	bobCalls := make(chan *ua.Call, 4)
	bob, err := ua.New(ua.Config{User: "bob@example.test", T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1,
		OnCall: func(c *ua.Call) {
			_ = c.Ring(c.Context())
			bobCalls <- c
			if <-answer {
				_ = c.Answer(c.Context())
			}
			<-c.Done()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bob.Close() })
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		T1: t1, T2: 8 * t1, T4: 10 * t1,
		Routing: proxy.Config{Locations: map[string][]string{"bob@example.test": {bob.Contact().URI.String()}}},
		Auth:    auth.Config{OpenDomains: []string{"*"}},
		API:     APIConfig{Listen: "127.0.0.1:0"}})
	base := "http://" + srv.APIAddr()
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(ctx, store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	alice, err := ua.New(ua.Config{User: "alice@example.test", Server: srv.Addrs()[0].Addr.String(), T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Close() })

	// The answered call.
	type placed struct {
		c   *ua.Call
		err error
	}
	done := make(chan placed, 1)
	go func() {
		c, err := alice.Call(ctx, "sip:bob@example.test")
		done <- placed{c, err}
	}()
	bc := <-bobCalls
	var l api.List[api.Call]
	waitFor(t, func() bool {
		apiCall(t, base, token, "GET", "/api/v1/calls", &l)
		return len(l.Items) == 1 && l.Items[0].State == "early"
	})
	id := l.Items[0].CallID
	if l.Items[0].From != "sip:alice@example.test" || l.Items[0].To != "sip:bob@example.test" || l.Items[0].Answered != nil {
		t.Fatalf("ringing call %+v", l.Items[0])
	}
	answer <- true
	p := <-done
	if p.err != nil {
		t.Fatal(p.err)
	}
	var c api.Call
	if code := apiCall(t, base, token, "GET", "/api/v1/calls/"+url.PathEscape(id), &c); code != 200 || c.State != "confirmed" || c.Answered == nil {
		t.Fatalf("answered call %d %+v", code, c)
	}
	var h api.HungUp
	if code := apiCall(t, base, token, "DELETE", "/api/v1/calls/"+url.PathEscape(id), &h); code != 202 || h.Action != "bye" {
		t.Fatalf("hang-up %d %+v", code, h)
	}
	for _, call := range []*ua.Call{p.c, bc} {
		select {
		case <-call.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a phone did not get its BYE")
		}
	}
	rec := waitCDR(t, srv, id)
	if rec.Status != "answered" || rec.EndedBy != "proxy" || rec.EndReason != "api" {
		t.Errorf("CDR %+v", rec)
	}
	if code := apiCall(t, base, token, "DELETE", "/api/v1/calls/"+url.PathEscape(id), nil); code != 404 {
		t.Errorf("second hang-up: %d", code)
	}

	// The ringing call.
	go func() {
		c, err := alice.Call(ctx, "sip:bob@example.test")
		done <- placed{c, err}
	}()
	bc = <-bobCalls
	waitFor(t, func() bool {
		apiCall(t, base, token, "GET", "/api/v1/calls", &l)
		return len(l.Items) == 1 && l.Items[0].State == "early"
	})
	id = l.Items[0].CallID
	if code := apiCall(t, base, token, "DELETE", "/api/v1/calls/"+url.PathEscape(id), &h); code != 202 || h.Action != "cancel" {
		t.Fatalf("hang-up while ringing %d %+v", code, h)
	}
	p = <-done
	var se *ua.StatusError
	if !errors.As(p.err, &se) || se.Code != 487 {
		t.Errorf("alice's call: %v", p.err)
	}
	answer <- false
	select {
	case <-bc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("bob's phone was not cancelled")
	}
	rec = waitCDR(t, srv, id)
	if rec.Status != "cancelled" || rec.EndedBy != "proxy" || rec.EndReason != "api" || rec.Code != 487 {
		t.Errorf("CDR %+v", rec)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCDR waits for the record of the call callID.
func waitCDR(t *testing.T, srv *Server, callID string) store.CDR {
	t.Helper()
	var out store.CDR
	waitFor(t, func() bool {
		recs, err := srv.store.CDRs(context.Background(), store.CDRFilter{Kind: "call"})
		if err != nil {
			return false
		}
		for _, r := range recs {
			if r.CallID == callID {
				out = r
				return true
			}
		}
		return false
	})
	return out
}
