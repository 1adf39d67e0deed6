package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// With accounting off there is no CDR to be a call's "ended" event: a
// tracked call's BYE, and an operator's hang-up, still end it in the
// stream, once, with the call's Call-ID and why it ended.
func TestAPIEventsCallEndedWithoutAccounting(t *testing.T) {
	ctx := context.Background()
	const t1 = 100 * time.Millisecond
	bob, err := ua.New(ua.Config{User: "bob@example.test", T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1,
		OnCall: func(c *ua.Call) {
			_ = c.Ring(c.Context())
			_ = c.Answer(c.Context())
			<-c.Done()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bob.Close() })
	off := false
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		T1: t1, T2: 8 * t1, T4: 10 * t1,
		Accounting: acc.Config{Enabled: &off},
		Routing:    proxy.Config{TimerC: time.Second, Locations: map[string][]string{"bob@example.test": {bob.Contact().URI.String()}}},
		Auth:       auth.Config{OpenDomains: []string{"*"}},
		API:        APIConfig{Listen: "127.0.0.1:0", EventsBuffer: 100}})
	if srv.acc != nil {
		t.Fatal("accounting on with enabled: false")
	}
	base := "http://" + srv.APIAddr()
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(ctx, store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	es := openEvents(t, base, token, "?types=call")
	alice, err := ua.New(ua.Config{User: "alice@example.test", Server: srv.Addrs()[0].Addr.String(), T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Close() })

	// answered places a call and reads its events up to "answered",
	// checking the proxy tracks it: the end it is about to see is that of
	// a tracked call.
	answered := func() (*ua.Call, string) {
		t.Helper()
		call, err := alice.Call(ctx, "sip:bob@example.test")
		if err != nil {
			t.Fatal(err)
		}
		id := call.Request().CallID
		for _, action := range []string{"started", "ringing", "answered"} {
			if d := dataOf(t, es.next(api.EventCall, action)); d["call_id"] != id {
				t.Fatalf("%s: %v, want call_id %s", action, d, id)
			}
		}
		var l api.List[api.Call]
		apiCall(t, base, token, "GET", "/api/v1/calls", &l)
		if len(l.Items) != 1 || l.Items[0].CallID != id {
			t.Fatalf("tracked calls %+v, want %s", l.Items, id)
		}
		return call, id
	}

	// The caller hangs up.
	call, id := answered()
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	d := dataOf(t, es.next(api.EventCall, "ended"))
	if d["call_id"] != id || d["reason"] != "bye" || d["code"] != 200.0 ||
		d["from"] != "sip:alice@example.test" || d["to"] != "sip:bob@example.test" {
		t.Fatalf("ended by BYE: %v", d)
	}

	// An operator hangs up: the proxy sends the BYEs.
	call, id = answered() // "started" next: the first call ended once
	if code := apiCall(t, base, token, "DELETE", "/api/v1/calls/"+id, nil); code != http.StatusAccepted {
		t.Fatalf("hang-up: %d", code)
	}
	if d := dataOf(t, es.next(api.EventCall, "ended")); d["call_id"] != id || d["reason"] != "api" ||
		d["from"] != "sip:alice@example.test" || d["to"] != "sip:bob@example.test" {
		t.Fatalf("ended by the operator: %v", d)
	}
	select {
	case <-call.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("alice's phone was not hung up")
	}

	// A third call starts next: the second ended once too.
	call, _ = answered()
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}
