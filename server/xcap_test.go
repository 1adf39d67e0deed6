package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/store"
)

// xcapDo sends an XCAP request as user (answering the digest challenge)
// and returns the status and body.
func xcapDo(t *testing.T, user, password, method, url, ctype, body string) (int, string) {
	t.Helper()
	send := func(authz string) *http.Response {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := send("")
	if res.StatusCode == 401 {
		res.Body.Close()
		ch, err := digest.ParseChallenge(res.Header.Values("WWW-Authenticate")[0])
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(method, url, nil)
		cr, err := ch.Authorize(digest.Answer{Method: method, URI: req.URL.RequestURI(), Username: user, Password: password, NC: 1, CNonce: "c0ffee"})
		if err != nil {
			t.Fatal(err)
		}
		res = send(cr.String())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// The XCAP server over the store: pres-rules is the presence rules table
// (what `hlas presence` writes shows in a GET, a PUT replaces the rules
// the server decides by), and a list service URI belongs to one user.
func TestXCAPServer(t *testing.T) {
	srv, _ := eventServer(t, Config{XCAP: XCAP{Listen: "127.0.0.1:0"}})
	ctx := context.Background()
	if err := srv.store.AddUser(ctx, auth.NewUser("dave", "example.test", "secret")); err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.XCAPAddr() + "/xcap-root"
	rules := base + "/pres-rules/users/sip:alice@example.test/index"
	if code, body := xcapDo(t, "alice", "secret", "GET", rules, "", ""); code != 404 {
		t.Fatalf("pres-rules without rules: %d %s", code, body)
	}
	if err := srv.store.PutPresenceRule(ctx, store.PresenceRule{Presentity: "alice@example.test", Watcher: "*@partner.test", Action: "allow"}); err != nil {
		t.Fatal(err)
	}
	code, body := xcapDo(t, "alice", "secret", "GET", rules, "", "")
	if code != 200 || !strings.Contains(body, `domain="partner.test"`) || !strings.Contains(body, "allow") {
		t.Fatalf("pres-rules after hlas presence allow: %d %s", code, body)
	}
	doc := `<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy">
 <cr:rule id="a"><cr:conditions><cr:identity><cr:one id="sip:bob@example.test"/></cr:identity></cr:conditions>
  <cr:actions><sub-handling>polite-block</sub-handling></cr:actions></cr:rule>
</cr:ruleset>`
	if code, body := xcapDo(t, "alice", "secret", "PUT", rules, "application/auth-policy+xml", doc); code != 200 {
		t.Fatalf("PUT pres-rules: %d %s", code, body)
	}
	got, _ := srv.store.PresenceRules(ctx, "alice@example.test")
	if len(got) != 1 || got[0].Watcher != "bob@example.test" || got[0].Action != "polite-block" {
		t.Fatalf("rules after the PUT: %+v", got)
	}
	srv.events.pollRules()
	if !srv.events.politeBlocked("bob@example.test", "alice@example.test") {
		t.Fatal("the server does not decide by the rules XCAP wrote")
	}
	// A condition the server cannot honour: 409, the rules untouched.
	sphere := strings.Replace(doc, `<cr:identity>`, `<cr:sphere value="work"/><cr:identity>`, 1)
	if code, body := xcapDo(t, "alice", "secret", "PUT", rules, "application/auth-policy+xml", sphere); code != 409 || !strings.Contains(body, "constraint-failure") {
		t.Fatalf("PUT with a sphere: %d %s", code, body)
	}
	if got, _ := srv.store.PresenceRules(ctx, "alice@example.test"); len(got) != 1 {
		t.Fatalf("a refused PUT changed the rules: %+v", got)
	}
	// The client gets back what it wrote, its rule ids and all, until
	// `hlas presence` changes the rules.
	if code, body := xcapDo(t, "alice", "secret", "GET", rules+`/~~/cr:ruleset/cr:rule%5b@id=%22a%22%5d?xmlns(cr=urn:ietf:params:xml:ns:common-policy)`, "", ""); code != 200 || !strings.Contains(body, "polite-block") {
		t.Fatalf("GET of the rule by the id the client gave: %d %s", code, body)
	}
	if err := srv.store.PutPresenceRule(ctx, store.PresenceRule{Presentity: "alice@example.test", Watcher: "carol@example.test", Action: "block"}); err != nil {
		t.Fatal(err)
	}
	if code, body := xcapDo(t, "alice", "secret", "GET", rules, "", ""); code != 200 || !strings.Contains(body, "carol@example.test") || !strings.Contains(body, "bob@example.test") {
		t.Fatalf("GET after hlas presence block: %d %s", code, body)
	}

	svc := func(uri string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">` +
			`<service uri="` + uri + `"><list><rl:entry uri="sip:bob@example.test"/></list><packages><package>presence</package></packages></service></rls-services>`
	}
	aliceSvc := base + "/rls-services/users/sip:alice@example.test/index"
	if code, body := xcapDo(t, "alice", "secret", "PUT", aliceSvc, "application/rls-services+xml", svc("sip:friends@example.test")); code != 201 {
		t.Fatalf("alice's service: %d %s", code, body)
	}
	daveSvc := base + "/rls-services/users/sip:dave@example.test/index"
	if code, body := xcapDo(t, "dave", "secret", "PUT", daveSvc, "application/rls-services+xml", svc("sip:friends@example.test")); code != 409 || !strings.Contains(body, "uniqueness-failure") {
		t.Fatalf("dave taking alice's service URI: %d %s", code, body)
	}
	if code, body := xcapDo(t, "dave", "secret", "PUT", daveSvc, "application/rls-services+xml", svc("sip:friends@elsewhere.test")); code != 409 {
		t.Fatalf("a service outside our domains: %d %s", code, body)
	}
	// A user's address is never a list (it would hide her presence),
	// and a service names only its owner's lists.
	if code, body := xcapDo(t, "dave", "secret", "PUT", daveSvc, "application/rls-services+xml", svc("sip:bob@example.test")); code != 409 || !strings.Contains(body, "user's address") {
		t.Fatalf("dave making bob's address a list: %d %s", code, body)
	}
	others := `<?xml version="1.0" encoding="UTF-8"?><rls-services xmlns="urn:ietf:params:xml:ns:rls-services">` +
		`<service uri="sip:peek@example.test"><resource-list>` + base + `/resource-lists/users/sip:alice@example.test/index/~~/resource-lists/list%5b@name=%22secret%22%5d</resource-list>` +
		`<packages><package>presence</package></packages></service></rls-services>`
	if code, body := xcapDo(t, "dave", "secret", "PUT", daveSvc, "application/rls-services+xml", others); code != 409 || !strings.Contains(body, "owner's lists") {
		t.Fatalf("dave's service over alice's list: %d %s", code, body)
	}
	// The inline list is served at once (the write reloads the lists).
	if s := srv.events.rls.service("friends@example.test"); s == nil || s.owner != "alice@example.test" || len(s.members) != 1 {
		t.Fatalf("the service alice wrote: %+v", s)
	}
}
