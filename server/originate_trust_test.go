package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// injectedTx is a server transaction for a request the test hands to the
// handler chain itself, as if it had come from src: the click-to-call
// user agent's socket cannot be shared, and a request arriving from it
// once its call is over cannot be produced on demand.
type injectedTx struct {
	src netip.AddrPort
	res chan *sip.Response
}

func (tx *injectedTx) Respond(res *sip.Response) error {
	if res.StatusCode >= 200 {
		tx.res <- res
	}
	return nil
}

func (tx *injectedTx) RespondStateless(res *sip.Response) error { return tx.Respond(res) }
func (tx *injectedTx) Source() netip.AddrPort                   { return tx.src }
func (tx *injectedTx) Transport() string                        { return transport.UDP }

// originationReaches reads origination events up to one in state; a
// failure on the way ends the test.
func originationReaches(t *testing.T, es *eventStream, state string) {
	t.Helper()
	for {
		select {
		case ev, ok := <-es.evs:
			if !ok {
				t.Fatalf("stream ended waiting for origination %s", state)
			}
			if ev.Type != api.EventOrigination {
				continue
			}
			if ev.Action == "failed" {
				t.Fatalf("origination failed: %s", ev.Data)
			}
			if ev.Action == state {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no origination %s event", state)
		}
	}
}

// With authentication required, the click-to-call user agent (which has
// no credentials) gets its own legs through unchallenged; a request from
// its address with a Call-ID of none of its calls is challenged like any
// stranger's; and a leg's BYE that comes after the origination ended is
// still forwarded to the phone, not challenged or refused.
func TestClickToCallTrustNarrowed(t *testing.T) {
	ctx := context.Background()
	const t1 = 100 * time.Millisecond
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		T1: t1, T2: 8 * t1, T4: 10 * t1,
		API: APIConfig{Listen: "127.0.0.1:0", EventsBuffer: 100}})
	base := "http://" + srv.APIAddr()
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(ctx, store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if err := srv.store.AddUser(ctx, auth.NewUser(u, "example.test", "secret")); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	phones := map[string]*ua.Call{}
	rang := make(chan string, 4)
	phone := func(user string, port int) *ua.UA {
		p, err := ua.New(ua.Config{User: user + "@example.test", Password: "secret", Server: srv.Addrs()[0].Addr.String(),
			MediaPort: port, T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1,
			OnCall: func(c *ua.Call) {
				mu.Lock()
				phones[user] = c
				mu.Unlock()
				rang <- user
				_ = c.Answer(c.Context())
				<-c.Done()
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		if _, err := p.Register(ctx); err != nil {
			t.Fatal(err)
		}
		return p
	}
	alicePhone := phone("alice", 41000)
	phone("bob", 42000)
	o := srv.orig.Load()
	if o == nil {
		t.Fatal("click-to-call is off")
	}
	es := openEvents(t, base, token, "?types=origination")

	req, _ := http.NewRequest("POST", base+"/api/v1/calls", strings.NewReader(`{"from":"alice","to":"bob"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var orig api.Origination
	err = json.NewDecoder(res.Body).Decode(&orig)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || err != nil || orig.CallID == "" {
		t.Fatalf("originate: %d %+v %v", res.StatusCode, orig, err)
	}
	// Both legs were placed without credentials: the controller's own
	// requests were not challenged.
	originationReaches(t, es, "connected")
	if first, second := <-rang, <-rang; first != "alice" || second != "bob" {
		t.Fatalf("rang %s then %s", first, second)
	}

	// (a) A request from the controller's address that is none of its
	// calls: 407, and bob's phone never sees it.
	foreign := "foreign-" + orig.CallID
	_, err = o.ua.CallWith(ctx, "sip:bob@example.test", ua.CallOptions{CallID: foreign, NoRedirect: true})
	var se *ua.StatusError
	if !errors.As(err, &se) || se.Code != 407 {
		t.Fatalf("INVITE with a foreign Call-ID from the controller's address: %v, want 407", err)
	}

	// What the controller's BYE of alice's leg looks like, as her phone's
	// dialog says: her Contact, the route set, the tags.
	mu.Lock()
	aliceCall := phones["alice"]
	mu.Unlock()
	dlg := aliceCall.Dialog()
	if dlg == nil {
		t.Fatal("alice's call has no dialog")
	}
	routes := slices.Clone(dlg.RouteSet())
	slices.Reverse(routes) // the UAC's route set is the Record-Route reversed
	var bye strings.Builder
	fmt.Fprintf(&bye, "BYE %s SIP/2.0\r\n", alicePhone.Contact().URI.String())
	fmt.Fprintf(&bye, "Via: SIP/2.0/UDP %s;branch=z9hG4bK-late-bye\r\n", o.local)
	for _, r := range routes {
		fmt.Fprintf(&bye, "Route: %s\r\n", r.String())
	}
	fmt.Fprintf(&bye, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 100 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		dlg.Remote().String(), dlg.Local().String(), orig.CallID)
	msg, err := sip.ParseString(bye.String())
	if err != nil {
		t.Fatalf("BYE: %v\n%s", err, bye.String())
	}

	// The origination ends; its legs are no longer the controller's.
	if code := apiCall(t, base, token, "DELETE", "/api/v1/calls/"+orig.CallID, nil); code != http.StatusAccepted {
		t.Fatalf("hang-up: %d", code)
	}
	originationReaches(t, es, "ended")
	waitFor(t, func() bool { return !o.ctl.Owns(orig.CallID) })
	<-aliceCall.Done()

	// (b) The late BYE is forwarded to alice's phone, which no longer
	// knows the dialog: its 481 is the proof the BYE got through.
	tx := &injectedTx{src: o.local, res: make(chan *sip.Response, 1)}
	srv.serve(ctx, tx, msg.(*sip.Request))
	select {
	case r := <-tx.res:
		if r.StatusCode != 481 {
			t.Fatalf("late BYE of a leg: %d %s, want 481 from alice's phone", r.StatusCode, r.Reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the late BYE")
	}
}
