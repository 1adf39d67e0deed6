package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// eventStream is an open GET /api/v1/events, read by one goroutine into
// a channel so that a missing event fails the test instead of hanging.
type eventStream struct {
	t   *testing.T
	res *http.Response
	evs chan api.Event
}

func openEvents(t *testing.T, base, token, query string) *eventStream {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		res.Body.Close()
		t.Fatalf("GET events%s = %d", query, res.StatusCode)
	}
	es := &eventStream{t: t, res: res, evs: make(chan api.Event, 64)}
	t.Cleanup(func() { res.Body.Close() })
	go func() {
		defer close(es.evs)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev api.Event
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Errorf("event %q: %v", data, err)
				return
			}
			es.evs <- ev
		}
	}()
	return es
}

// next returns the next event, which must be typ/action.
func (es *eventStream) next(typ, action string) api.Event {
	es.t.Helper()
	select {
	case ev, ok := <-es.evs:
		if !ok {
			es.t.Fatalf("stream ended waiting for %s %s", typ, action)
		}
		if ev.Type != typ || ev.Action != action {
			es.t.Fatalf("got %s %s (seq %d, %s), want %s %s", ev.Type, ev.Action, ev.Seq, ev.Data, typ, action)
		}
		return ev
	case <-time.After(10 * time.Second):
		es.t.Fatalf("no %s %s event", typ, action)
	}
	return api.Event{}
}

func dataOf(t *testing.T, ev api.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatalf("data of %d: %v", ev.Seq, err)
	}
	return m
}

// A phone registers, refreshes, calls another through the proxy and
// unregisters: the stream tells each, the call's end with its CDR; a
// client reconnecting with since= gets what it missed, in order.
func TestAPIEventStreamServer(t *testing.T) {
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
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		T1: t1, T2: 8 * t1, T4: 10 * t1,
		Routing: proxy.Config{TimerC: time.Second, Locations: map[string][]string{"bob@example.test": {bob.Contact().URI.String()}}},
		Auth:    auth.Config{OpenDomains: []string{"*"}},
		API:     APIConfig{Listen: "127.0.0.1:0", EventsBuffer: 100}})
	base := "http://" + srv.APIAddr()
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(ctx, store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	es := openEvents(t, base, token, "?types=registration,call")

	alice, err := ua.New(ua.Config{User: "alice@example.test", Server: srv.Addrs()[0].Addr.String(), T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Close() })
	if _, err := alice.Register(ctx); err != nil {
		t.Fatal(err)
	}
	added := es.next(api.EventRegistration, "added")
	if d := dataOf(t, added); d["aor"] != "alice@example.test" || d["transport"] != "UDP" {
		t.Fatalf("added: %s", added.Data)
	}
	if _, err := alice.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if d := dataOf(t, es.next(api.EventRegistration, "refreshed")); d["id"] != dataOf(t, added)["id"] {
		t.Fatalf("refreshed another binding: %v", d)
	}

	call, err := alice.Call(ctx, "sip:bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	started := es.next(api.EventCall, "started")
	callID := dataOf(t, started)["call_id"]
	if callID == "" || callID == nil {
		t.Fatalf("started: %s", started.Data)
	}
	if d := dataOf(t, es.next(api.EventCall, "ringing")); d["call_id"] != callID || d["code"] != 180.0 {
		t.Fatalf("ringing: %v", d)
	}
	if d := dataOf(t, es.next(api.EventCall, "answered")); d["call_id"] != callID || d["code"] != 200.0 {
		t.Fatalf("answered: %v", d)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	ended := es.next(api.EventCall, "ended")
	if d := dataOf(t, ended); d["call_id"] != callID || d["kind"] != "call" || d["status"] != "answered" || d["callee"] != "bob@example.test" {
		t.Fatalf("ended: the CDR %v", d)
	}

	// A client that saw up to "started" reconnects after more happened.
	es.res.Body.Close()
	if _, err := alice.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	again := openEvents(t, base, token, fmt.Sprintf("?since=%d", started.Seq))
	for _, want := range [][2]string{{"call", "ringing"}, {"call", "answered"}, {"call", "ended"}, {"registration", "removed"}} {
		ev := again.next(want[0], want[1])
		if want[1] == "ended" && ev.Seq != ended.Seq {
			t.Errorf("replayed ended has seq %d, was %d", ev.Seq, ended.Seq)
		}
		if want[1] == "removed" && dataOf(t, ev)["aor"] != "alice@example.test" {
			t.Errorf("removed: %s", ev.Data)
		}
	}
}

// Registration changes are told per binding, and forgetting an AOR with
// no bindings keeps the table bounded by the registrar's own.
func TestAPIEventsRegistrationTableEmpties(t *testing.T) {
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		Auth: auth.Config{OpenDomains: []string{"example.test"}}, API: APIConfig{Listen: "127.0.0.1:0"}})
	to := srv.addr(t, "UDP", false)
	reg := func(cseq, expires int) {
		msg := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5098;branch=z9hG4bK-ev-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:carol@example.test>;tag=f\r\nTo: <sip:carol@example.test>\r\nCall-ID: ev-reg-1\r\n"+
			"CSeq: %d REGISTER\r\nContact: <sip:carol@127.0.0.1:5098>;expires=%d\r\nContent-Length: 0\r\n\r\n", cseq, cseq, expires)
		if res := udpExchange(t, to, msg, 5*time.Second); res == nil || res.StatusCode != 200 {
			t.Fatalf("REGISTER: %v", res)
		}
	}
	ae := srv.apiEvents
	sub, _, _, err := ae.bus.Subscribe(nil, false, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	reg(1, 600)
	reg(2, 0)
	var got []string
	for len(got) < 2 {
		select {
		case ev := <-sub.C():
			got = append(got, ev.Type+" "+ev.Action)
		case <-time.After(10 * time.Second):
			t.Fatalf("events %v", got)
		}
	}
	if got[0] != "registration added" || got[1] != "registration removed" {
		t.Fatalf("events %v", got)
	}
	ae.mu.Lock()
	n := len(ae.regs)
	ae.mu.Unlock()
	if n != 0 {
		t.Errorf("%d AORs remembered after the last binding went", n)
	}
}

// Closing the server ends an open stream with a reason: the HTTP
// shutdown alone would wait for it.
func TestAPIEventStreamEndsAtClose(t *testing.T) {
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, API: APIConfig{Listen: "127.0.0.1:0"}})
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(context.Background(), store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+srv.APIAddr()+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "event: close\ndata: {\"reason\":\"server stopping\"}") {
		t.Fatalf("stream at close:\n%s", text)
	}
}

func TestAPIEventsBufferConfig(t *testing.T) {
	if err := (Config{API: APIConfig{Enabled: true, EventsBuffer: -1}}).Validate(); err == nil || !strings.Contains(err.Error(), "api.events_buffer") {
		t.Errorf("negative events_buffer: %v", err)
	}
	srv := newTestServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, API: APIConfig{Enabled: true, Listen: "127.0.0.1:0", EventsBuffer: 2}})
	for range 3 {
		srv.apiEvents.presence("alice@example.test")
	}
	sub, backlog, gap, err := srv.apiEvents.bus.Subscribe(nil, true, 0, 0)
	if err != nil || len(backlog) != 2 || gap == nil || gap.First != 2 {
		t.Fatalf("buffer of 2 after 3 events: backlog %d, gap %+v, %v", len(backlog), gap, err)
	}
	sub.Close()
	if srv2 := newTestServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}}); srv2.apiEvents != nil {
		t.Error("events collected with the API off")
	}
}

// A ban the guard places is an event, with its source and reason.
func TestAPIEventsBan(t *testing.T) {
	cfg := Config{Listen: []string{"udp:127.0.0.1:0"}, API: APIConfig{Listen: "127.0.0.2:0"}}
	cfg.Security.Detect.AuthFailures = 2
	cfg.Security.Trusted = []string{"192.0.2.0/24"} // loopback not trusted
	srv := startServer(t, cfg)
	sub, _, _, err := srv.apiEvents.bus.Subscribe([]string{api.EventBan}, false, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	wrong, _, _ := api.NewToken()
	for range 2 {
		apiCall(t, "http://"+srv.APIAddr(), wrong, "GET", "/api/v1/stats", nil)
	}
	select {
	case ev := <-sub.C():
		var d struct{ Source, Reason string }
		if err := json.Unmarshal(ev.Data, &d); err != nil || ev.Action != "added" || !strings.HasPrefix(d.Source, "127.0.0.1") || !strings.HasPrefix(d.Reason, "auth") {
			t.Fatalf("ban event %+v (%s), %v", ev, ev.Data, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ban event")
	}
}

// A presence PUBLISH is a presence event naming the AOR.
func TestAPIEventsPresence(t *testing.T) {
	srv, addr := eventServer(t, Config{API: APIConfig{Listen: "127.0.0.1:0"}})
	sub, _, _, err := srv.apiEvents.bus.Subscribe([]string{api.EventPresence}, false, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	alice := newEvClient(t, addr, "alice@example.test")
	if res := alice.publish("alice@example.test", "presence", "", 3600, "application/pidf+xml", pidfDoc("alice@example.test", "open", "here")); res.StatusCode != 200 {
		t.Fatalf("PUBLISH: %d", res.StatusCode)
	}
	select {
	case ev := <-sub.C():
		if ev.Action != "changed" || string(ev.Data) != `{"aor":"alice@example.test"}` {
			t.Fatalf("presence event %+v (%s)", ev, ev.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no presence event")
	}
}

// Bans an operator adds and lifts through the API (or `hlas ban`, which
// writes the same store) reach the guard and the event stream.
func TestAPIEventsOperatorBans(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, API: APIConfig{Listen: "127.0.0.1:0"}})
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(ctx, store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	sub, _, _, err := srv.apiEvents.bus.Subscribe([]string{api.EventBan}, false, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	send := func(method, path, body string) int {
		req, _ := http.NewRequest(method, "http://"+srv.APIAddr()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	next := func() (api.Event, map[string]any) {
		t.Helper()
		select {
		case ev := <-sub.C():
			var d map[string]any
			_ = json.Unmarshal(ev.Data, &d)
			return ev, d
		case <-time.After(10 * time.Second):
			t.Fatal("no ban event")
		}
		return api.Event{}, nil
	}
	if code := send("POST", "/api/v1/bans", `{"source":"198.51.100.0/24","reason":"fraud from this range"}`); code != 201 {
		t.Fatalf("POST bans: %d", code)
	}
	ev, d := next()
	if ev.Action != "added" || d["source"] != "198.51.100.0/24" || d["reason"] != "fraud from this range" || d["manual"] != true {
		t.Fatalf("added: %+v %v", ev, d)
	}
	if !srv.edge.bans.Banned(netip.MustParseAddr("198.51.100.9")) {
		t.Error("the guard does not hold the operator's ban")
	}
	if code := send("DELETE", "/api/v1/bans/198.51.100.0/24", ""); code != 204 {
		t.Fatalf("DELETE ban: %d", code)
	}
	if ev, d := next(); ev.Action != "removed" || d["source"] != "198.51.100.0/24" {
		t.Fatalf("removed: %+v %v", ev, d)
	}
	if srv.edge.bans.Banned(netip.MustParseAddr("198.51.100.9")) {
		t.Error("the guard still holds the lifted ban")
	}
}
