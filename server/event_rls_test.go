package server

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/event/rlmi"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// putList stores owner's resource-lists document with one list of
// members, and an rls-services document naming it as service.
func putList(t *testing.T, st store.Store, owner, list, service string, members ...string) {
	t.Helper()
	ctx := context.Background()
	doc := `<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="` + list + `">`
	for _, m := range members {
		doc += `<entry uri="sip:` + m + `"><display-name>` + strings.Split(m, "@")[0] + `</display-name></entry>`
	}
	doc += `</list></resource-lists>`
	ref := "http://xcap.example.test/xcap-root/resource-lists/users/sip:" + owner + `/index/~~/resource-lists/list%5b@name=%22` + list + `%22%5d`
	svcs := `<?xml version="1.0" encoding="UTF-8"?><rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">` +
		`<service uri="` + service + `"><resource-list>` + ref + `</resource-list><packages><package>presence</package></packages></service></rls-services>`
	for _, d := range []store.XCAPDocument{
		{AUID: "resource-lists", Owner: owner, Name: "index", Body: []byte(doc)},
		{AUID: "rls-services", Owner: owner, Name: "index", Body: []byte(svcs)},
	} {
		old, err := st.XCAPDocument(ctx, d.AUID, d.Owner, d.Name)
		if err != nil {
			old.ETag = ""
		}
		if _, err := st.PutXCAPDocument(ctx, d, old.ETag); err != nil {
			t.Fatal(err)
		}
	}
}

// subscribeList sends a list SUBSCRIBE (Supported: eventlist unless
// plain) and returns the final response.
func (e *evClient) subscribeList(resource string, eventlist bool, callID string) *sip.Response {
	ruri := "sip:" + resource
	return e.request("SUBSCRIBE", ruri, func(authz string, cseq uint32) string {
		extra := "Accept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n"
		if eventlist {
			extra += "Supported: eventlist\r\n"
		}
		return "SUBSCRIBE " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + e.addr() + ";branch=z9hG4bKrls" + strconv.Itoa(int(cseq)) + callID + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + e.user + ">;tag=l1\r\nTo: <" + ruri + ">\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(int(cseq)) + " SUBSCRIBE\r\n" +
			"Contact: <sip:" + strings.Split(e.user, "@")[0] + "@" + e.addr() + ">\r\n" +
			"Event: presence\r\nExpires: 600\r\n" + extra + authz + "Content-Length: 0\r\n\r\n"
	})
}

// listNotify reads NOTIFYs until one carries a list document, and returns
// it with its parts by member URI.
func listNotify(t *testing.T, e *evClient, wait time.Duration) (*rlmi.List, map[string]string) {
	t.Helper()
	n := e.notify(wait)
	if !strings.HasPrefix(n.ContentType, "multipart/related") {
		t.Fatalf("list NOTIFY of type %q:\n%s", n.ContentType, n.Body)
	}
	if n.Get("Require") != "eventlist" {
		t.Errorf("list NOTIFY without Require: eventlist (%q)", n.Get("Require"))
	}
	root, parts, err := rlmi.ParseMultipart(n.ContentType, n.Body)
	if err != nil {
		t.Fatalf("multipart: %v\n%s", err, n.Body)
	}
	list, err := rlmi.Parse(root.Body)
	if err != nil {
		t.Fatalf("rlmi: %v\n%s", err, root.Body)
	}
	byCID := map[string]string{}
	for _, p := range parts {
		byCID[p.CID] = string(p.Body)
	}
	states := map[string]string{}
	for _, r := range list.Resources {
		for _, in := range r.Instances {
			s := in.State
			if in.Reason != "" {
				s += ";" + in.Reason
			}
			if in.CID != "" {
				body, ok := byCID[in.CID]
				if !ok {
					t.Fatalf("instance of %s names part %q, which is missing", r.URI, in.CID)
				}
				s += " " + body
			}
			states[r.URI] = s
		}
	}
	return list, states
}

// RFC 4662: alice subscribes to her list and gets her buddies' presence
// in one NOTIFY, then only what changed.
func TestResourceList(t *testing.T) {
	srv, addr := eventServer(t, Config{})
	putList(t, srv.store, "alice@example.test", "friends", "sip:alice-friends@example.test", "bob@example.test", "carol@example.test", "nobody@example.test")
	srv.events.rls.poll()
	bob := newEvClient(t, addr, "bob@example.test")
	if res := bob.publish("bob@example.test", "presence", "", 3600, "application/pidf+xml", pidfDoc("bob@example.test", "open", "in a meeting")); res.StatusCode != 200 {
		t.Fatalf("bob's PUBLISH: %d", res.StatusCode)
	}
	alice := newEvClient(t, addr, "alice@example.test")
	if res := alice.subscribeList("alice-friends@example.test", false, "rls-0"); res.StatusCode != 421 || res.Get("Require") != "eventlist" {
		t.Fatalf("SUBSCRIBE to a list without eventlist: %d (Require %q), want 421", res.StatusCode, res.Get("Require"))
	}
	if res := alice.subscribeList("nobody@example.test", true, "rls-x"); res.StatusCode != 404 {
		t.Fatalf("SUBSCRIBE to nobody: %d, want 404", res.StatusCode)
	}
	if res := bob.subscribeList("alice-friends@example.test", true, "rls-1"); res.StatusCode != 403 {
		t.Fatalf("bob subscribing to alice's list: %d, want 403", res.StatusCode)
	}
	if res := alice.subscribeList("alice-friends@example.test", true, "rls-2"); res.StatusCode != 200 {
		t.Fatalf("alice's list SUBSCRIBE: %d", res.StatusCode)
	}
	list, st := listNotify(t, alice, 5*time.Second)
	if !list.FullState || list.URI != "sip:alice-friends@example.test" || len(list.Resources) != 3 {
		t.Fatalf("first list NOTIFY: %+v", list)
	}
	if s := st["sip:nobody@example.test"]; s != "terminated;noresource" {
		t.Fatalf("a member who is nobody: %q", s)
	}
	if s := st["sip:bob@example.test"]; !strings.HasPrefix(s, "active ") || !strings.Contains(s, "in a meeting") {
		t.Fatalf("bob in the list: %q", s)
	}
	if s := st["sip:carol@example.test"]; !strings.HasPrefix(s, "active ") || !strings.Contains(s, "<basic>closed</basic>") {
		t.Fatalf("carol in the list: %q", s)
	}
	v0 := list.Version

	// carol comes online: a partial NOTIFY with her alone.
	carol := newEvClient(t, addr, "carol@example.test")
	if res := carol.publish("carol@example.test", "presence", "", 3600, "application/pidf+xml", pidfDoc("carol@example.test", "open", "coffee")); res.StatusCode != 200 {
		t.Fatalf("carol's PUBLISH: %d", res.StatusCode)
	}
	list, st = listNotify(t, alice, 10*time.Second)
	if list.FullState || len(list.Resources) != 1 || list.Version <= v0 || !strings.Contains(st["sip:carol@example.test"], "coffee") {
		t.Fatalf("partial NOTIFY: full %v version %d (was %d), %v", list.FullState, list.Version, v0, st)
	}

	// bob blocks alice: his instance ends, rejected.
	if err := srv.store.PutPresenceRule(context.Background(), store.PresenceRule{Presentity: "bob@example.test", Watcher: "alice@example.test", Action: "block"}); err != nil {
		t.Fatal(err)
	}
	list, st = listNotify(t, alice, 10*time.Second)
	if s := st["sip:bob@example.test"]; s != "terminated;rejected" {
		t.Fatalf("bob after blocking alice: %q (%+v)", s, list)
	}

	// The list changes: the next NOTIFY is full state again.
	putList(t, srv.store, "alice@example.test", "friends", "sip:alice-friends@example.test", "carol@example.test")
	srv.events.rls.poll()
	list, st = listNotify(t, alice, 10*time.Second)
	if !list.FullState || len(list.Resources) != 1 || st["sip:carol@example.test"] == "" {
		t.Fatalf("NOTIFY after the list changed: %+v", list)
	}

	// The list goes: its subscription ends, noresource.
	d, err := srv.store.XCAPDocument(context.Background(), "rls-services", "alice@example.test", "index")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.store.DeleteXCAPDocument(context.Background(), "rls-services", "alice@example.test", "index", d.ETag); err != nil {
		t.Fatal(err)
	}
	srv.events.rls.poll()
	if n := alice.notify(10 * time.Second); n.Get("Subscription-State") != "terminated;reason=noresource" || len(n.Body) != 0 {
		t.Fatalf("NOTIFY after the list went: %q, body %q", n.Get("Subscription-State"), n.Body)
	}
}

// RFC 4662 §4.4: a member of another domain is watched through a
// back-end subscription from alice's server to the member's, while alice
// watches the list; it ends when she stops.
func TestResourceListBackEnd(t *testing.T) {
	remote := newTestServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"partner.test"},
		Events: Events{}})
	ctx := context.Background()
	if err := remote.store.AddUser(ctx, auth.NewUser("dave", "partner.test", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := remote.store.PutPresenceRule(ctx, store.PresenceRule{Presentity: "dave@partner.test", Watcher: "*@example.test", Action: "allow"}); err != nil {
		t.Fatal(err)
	}
	if err := remote.Start(); err != nil {
		t.Fatal(err)
	}
	raddr := remote.addr(t, "UDP", false)
	dave := newEvClient(t, raddr, "dave@partner.test")
	if res := dave.publish("dave@partner.test", "presence", "", 3600, "application/pidf+xml", pidfDoc("dave@partner.test", "open", "on the road")); res.StatusCode != 200 {
		t.Fatalf("dave's PUBLISH: %d", res.StatusCode)
	}

	srv, addr := eventServer(t, Config{Routing: proxy.Config{Routes: map[string][]string{"partner.test": {"udp:" + raddr.String()}}}})
	putList(t, srv.store, "alice@example.test", "mixed", "sip:alice-mixed@example.test", "bob@example.test", "dave@partner.test")
	srv.events.rls.poll()
	alice := newEvClient(t, addr, "alice@example.test")
	res := alice.subscribeList("alice-mixed@example.test", true, "rls-be")
	if res.StatusCode != 200 {
		t.Fatalf("alice's list SUBSCRIBE: %d", res.StatusCode)
	}
	// The first NOTIFY may come before the remote server answers: read
	// until dave is active.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, st := listNotify(t, alice, time.Until(deadline))
		if s := st["sip:dave@partner.test"]; strings.HasPrefix(s, "active ") {
			if !strings.Contains(s, "on the road") {
				t.Fatalf("dave's state through the back end: %q", s)
			}
			break
		} else if s != "" && !strings.HasPrefix(s, "pending") {
			t.Fatalf("dave while the back end starts: %q", s)
		}
	}
	if n := remote.events.n.Count(); n != 1 {
		t.Fatalf("%d subscriptions at dave's server, want the back end's 1", n)
	}
	// dave's change travels through both servers.
	if res := dave.publish("dave@partner.test", "presence", "", 3600, "application/pidf+xml", pidfDoc("dave@partner.test", "closed", "asleep")); res.StatusCode != 200 {
		t.Fatalf("dave's second PUBLISH: %d", res.StatusCode)
	}
	for {
		_, st := listNotify(t, alice, time.Until(deadline))
		if strings.Contains(st["sip:dave@partner.test"], "asleep") {
			break
		}
	}
	// alice unsubscribes: the back end goes too.
	unsub := alice.request("SUBSCRIBE", "sip:"+addr.String(), func(authz string, cseq uint32) string {
		return "SUBSCRIBE sip:" + addr.String() + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + alice.addr() + ";branch=z9hG4bKun" + strconv.Itoa(int(cseq)) + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=l1\r\nTo: <sip:alice-mixed@example.test>;tag=" + res.To.Tag() + "\r\n" +
			"Call-ID: rls-be\r\nCSeq: " + strconv.Itoa(int(cseq)) + " SUBSCRIBE\r\nEvent: presence\r\nExpires: 0\r\nSupported: eventlist\r\n" +
			authz + "Content-Length: 0\r\n\r\n"
	})
	if unsub.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", unsub.StatusCode)
	}
	for end := time.Now().Add(10 * time.Second); remote.events.n.Count() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d subscriptions left at dave's server after alice left", remote.events.n.Count())
		}
	}
	if n := srv.events.rls.back.Len(); n != 0 {
		t.Fatalf("%d back-end subscriptions held", n)
	}
}
