package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/event"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// evClient is a minimal user agent over UDP for the event tests: it sends
// requests (answering digest challenges), and answers every NOTIFY it
// gets with 200, handing it to notifies.
type evClient struct {
	t        *testing.T
	c        *net.UDPConn
	srv      netip.AddrPort
	user     string // user@domain
	password string
	seq      atomic.Uint32
	resps    chan *sip.Response
	notifies chan *sip.Request
}

func newEvClient(t *testing.T, srv netip.AddrPort, user string) *evClient {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e := &evClient{t: t, c: c, srv: srv, user: user, password: "secret", resps: make(chan *sip.Response, 16), notifies: make(chan *sip.Request, 16)}
	go e.read()
	return e
}

func (e *evClient) addr() string { return e.c.LocalAddr().String() }

func (e *evClient) read() {
	buf := make([]byte, 65536)
	for {
		n, from, err := e.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		m, err := sip.Parse(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case *sip.Response:
			e.resps <- m
		case *sip.Request:
			res := sip.NewResponse(m, 200, "")
			_, _ = e.c.WriteToUDPAddrPort(res.AppendTo(nil), from)
			if m.Method == sip.NOTIFY {
				e.notifies <- m
			}
		}
	}
}

// request sends a request built by build(authorization header line, CSeq)
// and returns its final response, answering one 401/407 challenge.
func (e *evClient) request(method, ruri string, build func(authz string, cseq uint32) string) *sip.Response {
	e.t.Helper()
	var authz string
	for attempt := 0; attempt < 2; attempt++ {
		cseq := e.seq.Add(1)
		if _, err := e.c.WriteToUDPAddrPort([]byte(build(authz, cseq)), e.srv); err != nil {
			e.t.Fatal(err)
		}
		res := e.final()
		if res.StatusCode != 401 && res.StatusCode != 407 || attempt == 1 {
			return res
		}
		hdr, cred := "WWW-Authenticate", "Authorization"
		if res.StatusCode == 407 {
			hdr, cred = "Proxy-Authenticate", "Proxy-Authorization"
		}
		ch, err := digest.ParseChallenge(res.Get(hdr))
		if err != nil {
			e.t.Fatal(err)
		}
		name, _, _ := strings.Cut(e.user, "@")
		cr, err := ch.Authorize(digest.Answer{Method: method, URI: ruri, Username: name, Password: e.password, NC: 1, CNonce: "abc123"})
		if err != nil {
			e.t.Fatal(err)
		}
		authz = cred + ": " + cr.String() + "\r\n"
	}
	return nil
}

func (e *evClient) final() *sip.Response {
	e.t.Helper()
	for {
		select {
		case res := <-e.resps:
			if res.StatusCode >= 200 {
				return res
			}
		case <-time.After(5 * time.Second):
			e.t.Fatal("no final response")
		}
	}
}

func (e *evClient) notify(wait time.Duration) *sip.Request {
	e.t.Helper()
	select {
	case n := <-e.notifies:
		return n
	case <-time.After(wait):
		e.t.Fatalf("no NOTIFY within %s", wait)
	}
	return nil
}

// subscribe sends a SUBSCRIBE for pkg to resource (outside a dialog when
// toTag is "", else a refresh in the dialog callID/fromTag/toTag).
func (e *evClient) subscribe(resource, pkg string, expires int, callID, toTag string) *sip.Response {
	ruri := "sip:" + resource
	if toTag != "" {
		ruri = "sip:" + e.srv.String()
	}
	return e.request("SUBSCRIBE", ruri, func(authz string, cseq uint32) string {
		to := "<sip:" + resource + ">"
		if toTag != "" {
			to += ";tag=" + toTag
		}
		return "SUBSCRIBE " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + e.addr() + ";branch=z9hG4bKev" + strconv.Itoa(int(cseq)) + callID + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + e.user + ">;tag=w1\r\nTo: " + to + "\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(int(cseq)) + " SUBSCRIBE\r\n" +
			"Contact: <sip:" + strings.Split(e.user, "@")[0] + "@" + e.addr() + ">\r\n" +
			"Event: " + pkg + "\r\nExpires: " + strconv.Itoa(expires) + "\r\n" + authz + "Content-Length: 0\r\n\r\n"
	})
}

func (e *evClient) publish(resource, pkg, ifMatch string, expires int, ctype, body string) *sip.Response {
	ruri := "sip:" + resource
	return e.request("PUBLISH", ruri, func(authz string, cseq uint32) string {
		extra := ""
		if ifMatch != "" {
			extra += "SIP-If-Match: " + ifMatch + "\r\n"
		}
		if expires >= 0 {
			extra += "Expires: " + strconv.Itoa(expires) + "\r\n"
		}
		if ctype != "" {
			extra += "Content-Type: " + ctype + "\r\n"
		}
		return "PUBLISH " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + e.addr() + ";branch=z9hG4bKpub" + strconv.Itoa(int(cseq)) + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + e.user + ">;tag=p1\r\nTo: <sip:" + resource + ">\r\n" +
			"Call-ID: pub-" + e.addr() + "\r\nCSeq: " + strconv.Itoa(int(cseq)) + " PUBLISH\r\n" +
			"Event: " + pkg + "\r\n" + extra + authz + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	})
}

func eventServer(t *testing.T, cfg Config) (*Server, netip.AddrPort) {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []string{"udp:127.0.0.1:0"}
	}
	cfg.Domains = []string{"example.test"}
	if cfg.Events.Subscriptions.MinInterval == 0 {
		// The rate limit is the event package's to test; here each
		// change is to be seen at once.
		cfg.Events.Subscriptions.MinInterval = 10 * time.Millisecond
	}
	srv := newTestServer(t, cfg)
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := srv.store.AddUser(context.Background(), auth.NewUser(u, "example.test", "secret")); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv, srv.addr(t, "UDP", false)
}

func pidfDoc(entity, basic, note string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:` + entity + `">` +
		`<tuple id="t1"><status><basic>` + basic + `</basic></status><note>` + note + `</note></tuple></presence>`
}

// RFC 3842 over RFC 6665: a user subscribes to its own mailbox; `hlas mwi
// set` (a store write) is notified within the server's poll.
func TestMessageSummary(t *testing.T) {
	srv, addr := eventServer(t, Config{})
	alice := newEvClient(t, addr, "alice@example.test")
	res := alice.subscribe("alice@example.test", "message-summary", 3600, "mwi-1", "")
	if res.StatusCode != 200 || res.To.Tag() == "" || res.Get("Expires") == "" {
		t.Fatalf("SUBSCRIBE: %d (To tag %q, Expires %q)", res.StatusCode, res.To.Tag(), res.Get("Expires"))
	}
	n := alice.notify(5 * time.Second)
	if !strings.HasPrefix(n.Get("Subscription-State"), "active") || !strings.Contains(string(n.Body), "Messages-Waiting: no") ||
		n.Get("Event") != "message-summary" {
		t.Fatalf("first NOTIFY: state %q event %q body %q", n.Get("Subscription-State"), n.Get("Event"), n.Body)
	}
	if err := srv.store.PutMailbox(context.Background(), store.Mailbox{AOR: "alice@example.test", New: 2, Old: 8, UrgentOld: 2}); err != nil {
		t.Fatal(err)
	}
	n = alice.notify(10 * time.Second)
	if body := string(n.Body); !strings.Contains(body, "Messages-Waiting: yes") || !strings.Contains(body, "Voice-Message: 2/8 (0/2)") {
		t.Fatalf("NOTIFY after the mailbox changed: %q", body)
	}
	// Another user may not watch alice's mailbox.
	bob := newEvClient(t, addr, "bob@example.test")
	if res := bob.subscribe("alice@example.test", "message-summary", 3600, "mwi-2", ""); res.StatusCode != 403 {
		t.Fatalf("bob subscribing to alice's mailbox: %d, want 403", res.StatusCode)
	}
	// Unsubscribe: a final NOTIFY, terminated.
	if res := alice.subscribe("alice@example.test", "message-summary", 0, "mwi-1", res.To.Tag()); res.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", res.StatusCode)
	}
	if n := alice.notify(5 * time.Second); !strings.HasPrefix(n.Get("Subscription-State"), "terminated") {
		t.Fatalf("final NOTIFY state %q", n.Get("Subscription-State"))
	}
}

// RFC 3856 + RFC 3903: alice publishes, bob (same domain) watches her.
func TestPresencePublishSubscribe(t *testing.T) {
	_, addr := eventServer(t, Config{})
	alice := newEvClient(t, addr, "alice@example.test")
	res := alice.publish("alice@example.test", "presence", "", 3600, "application/pidf+xml", pidfDoc("alice@example.test", "open", "at my desk"))
	etag := res.Get("SIP-ETag")
	if res.StatusCode != 200 || etag == "" || res.Get("Expires") == "" {
		t.Fatalf("PUBLISH: %d, SIP-ETag %q, Expires %q", res.StatusCode, etag, res.Get("Expires"))
	}
	bob := newEvClient(t, addr, "bob@example.test")
	if res := bob.subscribe("alice@example.test", "presence", 3600, "pres-1", ""); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE presence: %d", res.StatusCode)
	}
	n := bob.notify(5 * time.Second)
	if body := string(n.Body); !strings.HasPrefix(n.Get("Subscription-State"), "active") ||
		!strings.Contains(body, "<basic>open</basic>") || !strings.Contains(body, "at my desk") {
		t.Fatalf("NOTIFY: %q\n%s", n.Get("Subscription-State"), body)
	}
	// Modify (RFC 3903 §4.4): a new state under the ETag.
	res = alice.publish("alice@example.test", "presence", etag, 3600, "application/pidf+xml", pidfDoc("alice@example.test", "closed", "gone home"))
	if res.StatusCode != 200 || res.Get("SIP-ETag") == "" || res.Get("SIP-ETag") == etag {
		t.Fatalf("modify: %d, SIP-ETag %q (old %q)", res.StatusCode, res.Get("SIP-ETag"), etag)
	}
	n = bob.notify(10 * time.Second)
	if body := string(n.Body); !strings.Contains(body, "<basic>closed</basic>") || !strings.Contains(body, "gone home") {
		t.Fatalf("NOTIFY after the modify:\n%s", body)
	}
	// RFC 3903 §4.1 step 4: an ETag the server does not know: 412.
	if res := alice.publish("alice@example.test", "presence", "no-such-etag", 3600, "", ""); res.StatusCode != 412 {
		t.Fatalf("unknown ETag: %d, want 412", res.StatusCode)
	}
	// Only the presentity publishes: 403; unknown package: 489.
	if res := bob.publish("alice@example.test", "presence", "", 3600, "application/pidf+xml", pidfDoc("alice@example.test", "open", "")); res.StatusCode != 403 {
		t.Fatalf("bob publishing for alice: %d, want 403", res.StatusCode)
	}
	if res := alice.publish("alice@example.test", "frobnicate", "", 3600, "text/plain", "x"); res.StatusCode != 489 || res.Get("Allow-Events") == "" {
		t.Fatalf("unknown package: %d (Allow-Events %q), want 489", res.StatusCode, res.Get("Allow-Events"))
	}
	// Malformed PIDF: 400 with a Warning, never stored.
	if res := alice.publish("alice@example.test", "presence", "", 3600, "application/pidf+xml", "<presence><tuple>"); res.StatusCode != 400 || res.Get("Warning") == "" {
		t.Fatalf("malformed PIDF: %d (Warning %q), want 400", res.StatusCode, res.Get("Warning"))
	}
	// SUBSCRIBE for a package the server does not serve: 489 with Allow-Events.
	if res := bob.subscribe("alice@example.test", "frobnicate", 3600, "pres-2", ""); res.StatusCode != 489 || !strings.Contains(res.Get("Allow-Events"), "presence") {
		t.Fatalf("unknown package: %d, Allow-Events %q", res.StatusCode, res.Get("Allow-Events"))
	}
}

// RFC 3680: a user watching its own registrations sees a new binding.
func TestRegEvent(t *testing.T) {
	_, addr := eventServer(t, Config{})
	alice := newEvClient(t, addr, "alice@example.test")
	if res := alice.subscribe("alice@example.test", "reg", 3600, "reg-1", ""); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE reg: %d", res.StatusCode)
	}
	if n := alice.notify(5 * time.Second); !strings.Contains(string(n.Body), `state="init"`) {
		t.Fatalf("first reginfo:\n%s", n.Body)
	}
	phone := newEvClient(t, addr, "alice@example.test")
	res := phone.request("REGISTER", "sip:example.test", func(authz string, cseq uint32) string {
		return "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP " + phone.addr() + ";branch=z9hG4bKreg" + strconv.Itoa(int(cseq)) + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=r1\r\nTo: <sip:alice@example.test>\r\nCall-ID: reg-phone\r\n" +
			"CSeq: " + strconv.Itoa(int(cseq)) + " REGISTER\r\nContact: <sip:alice@" + phone.addr() + ">;expires=600\r\n" + authz + "Content-Length: 0\r\n\r\n"
	})
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER: %d", res.StatusCode)
	}
	n := alice.notify(10 * time.Second)
	if body := string(n.Body); !strings.Contains(body, `state="active"`) || !strings.Contains(body, "sip:alice@"+phone.addr()) {
		t.Fatalf("reginfo after the REGISTER:\n%s", body)
	}
}

// RFC 3857: alice watches her own watchers and sees bob's subscription
// come and go.
func TestWatcherInfo(t *testing.T) {
	_, addr := eventServer(t, Config{})
	alice := newEvClient(t, addr, "alice@example.test")
	if res := alice.subscribe("alice@example.test", "presence.winfo", 3600, "winfo-1", ""); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE presence.winfo: %d", res.StatusCode)
	}
	if n := alice.notify(5 * time.Second); !strings.Contains(string(n.Body), `resource="sip:alice@example.test"`) || strings.Contains(string(n.Body), "bob@") {
		t.Fatalf("first watcherinfo:\n%s", n.Body)
	}
	bob := newEvClient(t, addr, "bob@example.test")
	res := bob.subscribe("alice@example.test", "presence", 3600, "pres-w", "")
	if res.StatusCode != 200 {
		t.Fatalf("bob's SUBSCRIBE: %d", res.StatusCode)
	}
	n := alice.notify(10 * time.Second)
	if body := string(n.Body); !strings.Contains(body, "sip:bob@example.test") || !strings.Contains(body, `status="active"`) {
		t.Fatalf("watcherinfo after bob subscribed:\n%s", body)
	}
	// Another user may not read alice's watchers.
	if res := bob.subscribe("alice@example.test", "presence.winfo", 3600, "winfo-2", ""); res.StatusCode != 403 {
		t.Fatalf("bob reading alice's watchers: %d, want 403", res.StatusCode)
	}
	// bob leaves: alice's next watcher list shows him once more,
	// terminated, with the event that ended him (RFC 3857 §5.1).
	if res := bob.subscribe("alice@example.test", "presence", 0, "pres-w", res.To.Tag()); res.StatusCode != 200 {
		t.Fatalf("bob's unsubscribe: %d", res.StatusCode)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		body := string(alice.notify(time.Until(deadline)).Body)
		if strings.Contains(body, "sip:bob@example.test") && strings.Contains(body, `status="terminated"`) {
			if !strings.Contains(body, `event="timeout"`) {
				t.Fatalf("bob's end without its event:\n%s", body)
			}
			break
		}
	}
}

// RFC 4235, the busy lamp field: carol watches bob's dialogs; a call from
// alice to bob shows as early while it rings, confirmed when answered and
// terminated when alice hangs up.
func TestBusyLampField(t *testing.T) {
	ring := make(chan *ua.Call, 1)
	bob, err := ua.New(ua.Config{User: "bob@example.test", T1: 50 * time.Millisecond, OnCall: func(c *ua.Call) {
		_ = c.Ring(c.Context())
		ring <- c
		<-c.Done()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	srv, addr := eventServer(t, Config{
		Routing: proxy.Config{Locations: map[string][]string{"bob@example.test": {bob.Contact().URI.String()}}},
		Events:  Events{Subscriptions: event.Config{MinInterval: 10 * time.Millisecond}},
	})
	_ = srv
	carol := newEvClient(t, addr, "carol@example.test")
	if res := carol.subscribe("bob@example.test", "dialog", 3600, "blf-1", ""); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE dialog: %d", res.StatusCode)
	}
	if n := carol.notify(5 * time.Second); !strings.Contains(string(n.Body), `entity="sip:bob@example.test"`) || strings.Contains(string(n.Body), "<dialog ") {
		t.Fatalf("first dialog-info (idle):\n%s", n.Body)
	}
	// waitState reads NOTIFYs until bob's dialog is in state.
	waitState := func(state string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			n := carol.notify(time.Until(deadline))
			if body := string(n.Body); strings.Contains(body, "<state") && strings.Contains(body, ">"+state+"</state>") {
				if !strings.Contains(body, `direction="recipient"`) {
					t.Fatalf("bob's dialog without direction recipient:\n%s", body)
				}
				return body
			}
		}
		t.Fatalf("no dialog-info with state %s", state)
		return ""
	}
	alice, err := ua.New(ua.Config{User: "alice@example.test", Password: "secret", Server: addr.String(), T1: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	calls := make(chan *ua.Call, 1)
	go func() {
		c, err := alice.Call(ctx, "sip:bob@example.test")
		if err == nil {
			calls <- c
		}
	}()
	rung := <-ring
	waitState("early")
	if err := rung.Answer(ctx); err != nil {
		t.Fatal(err)
	}
	waitState("confirmed")
	c := <-calls
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitState("terminated")
}

// RFC 3857 authorization: a watcher of another domain waits pending
// until the presentity allows it; a blocked colleague's subscription ends
// (terminated;reason=rejected) and a new one is refused.
func TestPresenceRules(t *testing.T) {
	srv, addr := eventServer(t, Config{})
	ctx := context.Background()
	if res := newEvClient(t, addr, "alice@example.test").publish("alice@example.test", "presence", "", 3600,
		"application/pidf+xml", pidfDoc("alice@example.test", "open", "here")); res.StatusCode != 200 {
		t.Fatalf("PUBLISH: %d", res.StatusCode)
	}
	dave := newEvClient(t, addr, "dave@partner.test") // another domain: not challenged
	if res := dave.subscribe("alice@example.test", "presence", 3600, "rule-1", ""); res.StatusCode != 200 {
		t.Fatalf("dave's SUBSCRIBE: %d", res.StatusCode)
	}
	if n := dave.notify(5 * time.Second); !strings.HasPrefix(n.Get("Subscription-State"), "pending") || len(n.Body) != 0 {
		t.Fatalf("dave's first NOTIFY: %q, body %q; want pending without state", n.Get("Subscription-State"), n.Body)
	}
	if err := srv.store.PutPresenceRule(ctx, store.PresenceRule{Presentity: "alice@example.test", Watcher: "*@partner.test", Action: "allow"}); err != nil {
		t.Fatal(err)
	}
	n := dave.notify(10 * time.Second)
	if !strings.HasPrefix(n.Get("Subscription-State"), "active") || !strings.Contains(string(n.Body), "here") {
		t.Fatalf("dave after the allow: %q\n%s", n.Get("Subscription-State"), n.Body)
	}
	bob := newEvClient(t, addr, "bob@example.test")
	if res := bob.subscribe("alice@example.test", "presence", 3600, "rule-2", ""); res.StatusCode != 200 {
		t.Fatalf("bob's SUBSCRIBE: %d", res.StatusCode)
	}
	if n := bob.notify(5 * time.Second); !strings.HasPrefix(n.Get("Subscription-State"), "active") {
		t.Fatalf("bob's first NOTIFY: %q", n.Get("Subscription-State"))
	}
	if err := srv.store.PutPresenceRule(ctx, store.PresenceRule{Presentity: "alice@example.test", Watcher: "bob@example.test", Action: "block"}); err != nil {
		t.Fatal(err)
	}
	if n := bob.notify(10 * time.Second); !strings.Contains(n.Get("Subscription-State"), "terminated") || !strings.Contains(n.Get("Subscription-State"), "rejected") {
		t.Fatalf("bob after the block: %q", n.Get("Subscription-State"))
	}
	if res := bob.subscribe("alice@example.test", "presence", 3600, "rule-3", ""); res.StatusCode != 403 {
		t.Fatalf("bob subscribing again: %d, want 403", res.StatusCode)
	}
}
