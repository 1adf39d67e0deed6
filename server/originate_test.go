package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// Click-to-call through the server: alice's and bob's phones register;
// POST /api/v1/calls rings alice, then bob, and connects them (each
// phone's remote SDP is the other's media); both legs are listed as
// calls; the origination's progress is in the event stream; hanging up
// one leg through the API ends the other.
func TestAPIClickToCall(t *testing.T) {
	ctx := context.Background()
	const t1 = 100 * time.Millisecond
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		T1: t1, T2: 8 * t1, T4: 10 * t1,
		Auth: auth.Config{OpenDomains: []string{"*"}},
		API:  APIConfig{Listen: "127.0.0.1:0", EventsBuffer: 100}})
	base := "http://" + srv.APIAddr()
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(ctx, store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	post := func(body string, v any) int {
		req, _ := http.NewRequest("POST", base+"/api/v1/calls", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if v != nil {
			_ = json.NewDecoder(res.Body).Decode(v)
		}
		return res.StatusCode
	}
	for _, u := range []string{"alice", "bob"} {
		if err := srv.store.AddUser(ctx, store.User{Username: u, Domain: "example.test", HA1MD5: "x", HA1SHA256: "y"}); err != nil {
			t.Fatal(err)
		}
	}
	if code := post(`{"from":"alice","to":"bob"}`, nil); code != http.StatusConflict {
		t.Errorf("alice not registered: %d", code)
	}
	if code := post(`{"from":"carol","to":"bob"}`, nil); code != http.StatusNotFound {
		t.Errorf("no such subscriber: %d", code)
	}
	if code := post(`{"from":"alice@elsewhere.test","to":"bob"}`, nil); code != http.StatusBadRequest {
		t.Errorf("foreign from: %d", code)
	}

	var mu sync.Mutex
	phones := map[string]*ua.Call{}
	calls := make(chan string, 4)
	phone := func(user string, port int) *ua.UA {
		p, err := ua.New(ua.Config{User: user + "@example.test", Server: srv.Addrs()[0].Addr.String(), MediaPort: port,
			T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1,
			OnCall: func(c *ua.Call) {
				_ = c.Ring(c.Context())
				mu.Lock()
				phones[user] = c
				mu.Unlock()
				calls <- user
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
	phone("alice", 41000)
	phone("bob", 42000)
	es := openEvents(t, base, token, "?types=origination")

	var o api.Origination
	if code := post(`{"from":"alice","to":"bob"}`, &o); code != http.StatusAccepted || o.ID == "" || o.CallID == "" || o.From != "alice@example.test" {
		t.Fatalf("originate: %d %+v", code, o)
	}
	for _, state := range []string{"calling-a", "ringing-a", "answered-a", "calling-b", "ringing-b", "connected"} {
		ev := es.next(api.EventOrigination, state)
		if d := dataOf(t, ev); d["id"] != o.ID || d["call_id_a"] != o.CallID {
			t.Fatalf("%s: %v", state, d)
		}
	}
	if first, second := <-calls, <-calls; first != "alice" || second != "bob" {
		t.Fatalf("rang %s then %s", first, second)
	}
	mu.Lock()
	alice, bob := phones["alice"], phones["bob"]
	mu.Unlock()
	// Each phone sends its media to the other's port.
	waitFor(t, func() bool {
		return bytes.Contains(alice.RemoteSDP(), []byte("m=audio 42000 ")) && bytes.Contains(bob.RemoteSDP(), []byte("m=audio 41000 "))
	})
	if from := alice.Request().From.URI.User; from != "bob" {
		t.Errorf("alice's phone shows %q calling", from)
	}
	if from := bob.Request().From.URI.User; from != "alice" {
		t.Errorf("bob's phone shows %q calling", from)
	}
	var l api.List[api.Call]
	apiCall(t, base, token, "GET", "/api/v1/calls", &l)
	if len(l.Items) != 2 || l.Items[0].CallID != o.CallID || l.Items[0].State != "confirmed" || l.Items[1].State != "confirmed" {
		t.Fatalf("calls %+v", l.Items)
	}

	// Hanging up alice's leg ends bob's too.
	if code := apiCall(t, base, token, "DELETE", "/api/v1/calls/"+o.CallID, nil); code != http.StatusAccepted {
		t.Fatalf("hang-up: %d", code)
	}
	for _, c := range []*ua.Call{alice, bob} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a phone was not hung up")
		}
	}
	if d := dataOf(t, es.next(api.EventOrigination, "ended")); d["reason"] != "a-hangup" {
		t.Errorf("ended: %v", d)
	}
	waitFor(t, func() bool {
		apiCall(t, base, token, "GET", "/api/v1/calls", &l)
		return len(l.Items) == 0
	})
}
