package xcap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip/digest"
)

// memStore is a Store in memory with the compare-and-set of the real ones.
type memStore struct {
	mu   sync.Mutex
	docs map[string]memDoc
	seq  int
	puts atomic.Int64 // PutDocument calls, successful or not
}

type memDoc struct {
	body []byte
	etag string
}

func newMemStore() *memStore { return &memStore{docs: map[string]memDoc{}} }

func memKey(auid, user, name string) string { return auid + "\x00" + user + "\x00" + name }

func (m *memStore) Document(_ context.Context, auid, user, name string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[memKey(auid, user, name)]
	if !ok {
		return nil, "", ErrNotFound
	}
	return bytes.Clone(d.body), d.etag, nil
}

func (m *memStore) PutDocument(_ context.Context, auid, user, name string, body []byte, ifETag string) (string, error) {
	m.puts.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memKey(auid, user, name)
	d, ok := m.docs[k]
	if (ifETag == "" && ok) || (ifETag != "" && (!ok || d.etag != ifETag)) {
		return "", ErrConflict
	}
	m.seq++
	etag := fmt.Sprintf("e%d", m.seq)
	m.docs[k] = memDoc{bytes.Clone(body), etag}
	return etag, nil
}

func (m *memStore) DeleteDocument(_ context.Context, auid, user, name, ifETag string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memKey(auid, user, name)
	d, ok := m.docs[k]
	switch {
	case !ok:
		return ErrNotFound
	case d.etag != ifETag:
		return ErrConflict
	}
	delete(m.docs, k)
	return nil
}

func (m *memStore) body(auid, user, name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.docs[memKey(auid, user, name)].body)
}

// testServer is an XCAP server with two subscribers and a clock the test
// moves.
type testServer struct {
	*httptest.Server
	store   *memStore
	xcap    *Server
	now     atomic.Int64 // Unix nanoseconds
	changes atomic.Int64
	// ha1Calls records the user and domain HA1 was asked about.
	mu       sync.Mutex
	ha1Calls []string
	// fullUsernameHash makes HA1 return the hash over "user@domain", as a
	// store keeping such hashes would.
	fullUsernameHash atomic.Bool
}

var passwords = map[string]string{"alice@example.com": "secret-a", "bob@example.com": "secret-b"}

const (
	rlPath = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
	rlType = "application/resource-lists+xml"
)

func newTestServer(t *testing.T, cfg Config, auids ...AUID) *testServer {
	t.Helper()
	ts := &testServer{store: newMemStore()}
	ts.now.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	if len(auids) == 0 {
		auids = []AUID{{Name: "resource-lists", ContentType: rlType, Namespace: rlNS}}
	}
	srv, err := New(cfg, Env{
		Store: ts.store,
		HA1: func(_ context.Context, username, domain string, alg digest.Algorithm) (string, error) {
			ts.mu.Lock()
			ts.ha1Calls = append(ts.ha1Calls, username+"@"+domain)
			ts.mu.Unlock()
			pw, ok := passwords[username+"@"+domain]
			if !ok {
				return "", errors.New("no such user")
			}
			if ts.fullUsernameHash.Load() {
				return digest.HA1(alg, username+"@"+domain, domain, pw, "", ""), nil
			}
			return digest.HA1(alg, username, domain, pw, "", ""), nil
		},
		NonceKey: []byte("test key"),
		Now:      func() time.Time { return time.Unix(0, ts.now.Load()) },
		OnChange: func(auid, user, name string) { ts.changes.Add(1) },
	}, auids...)
	if err != nil {
		t.Fatal(err)
	}
	ts.xcap = srv
	ts.Server = httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts
}

// client is a user agent answering digest challenges.
type client struct {
	ts       *testServer
	username string // as sent in the credentials
	password string
	alg      string // challenge to answer: "SHA-256" or "MD5"
	host     string // Host header; "" for the test server's
}

func (ts *testServer) client(username, password string) *client {
	return &client{ts: ts, username: username, password: password, alg: "SHA-256"}
}

type reply struct {
	status int
	header http.Header
	body   string
}

// send sends one request, with the credentials given.
func (c *client) send(method, target string, body []byte, hdr map[string]string, auth string) (reply, error) {
	req, err := http.NewRequest(method, c.ts.URL+target, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if c.host != "" {
		req.Host = c.host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}, err
}

// findChallenge returns the challenge of a 401 for the client's algorithm.
func (c *client) findChallenge(r reply) (*digest.Challenge, error) {
	if r.status != http.StatusUnauthorized {
		return nil, fmt.Errorf("got %d, want 401", r.status)
	}
	for _, v := range r.header.Values("WWW-Authenticate") {
		ch, err := digest.ParseChallenge(v)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(ch.Algorithm, c.alg) {
			return ch, nil
		}
	}
	return nil, fmt.Errorf("no %s challenge in %v", c.alg, r.header.Values("WWW-Authenticate"))
}

// answer answers a challenge for a request.
func (c *client) answer(ch *digest.Challenge, method, target string) (string, error) {
	cr, err := ch.Authorize(digest.Answer{Method: method, URI: target, Username: c.username, Password: c.password, CNonce: "0a4f113b"})
	if err != nil {
		return "", err
	}
	return cr.String(), nil
}

// try sends a request, answering the challenge it gets; it may run on any
// goroutine.
func (c *client) try(method, target string, body []byte, hdr map[string]string) (reply, error) {
	first, err := c.send(method, target, body, hdr, "")
	if err != nil || first.status != http.StatusUnauthorized {
		return first, err
	}
	ch, err := c.findChallenge(first)
	if err != nil {
		return reply{}, err
	}
	auth, err := c.answer(ch, method, target)
	if err != nil {
		return reply{}, err
	}
	return c.send(method, target, body, hdr, auth)
}

func (c *client) raw(t *testing.T, method, target string, body []byte, hdr map[string]string, auth string) reply {
	t.Helper()
	r, err := c.send(method, target, body, hdr, auth)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (c *client) challenge(t *testing.T, r reply) *digest.Challenge {
	t.Helper()
	ch, err := c.findChallenge(r)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func (c *client) authorization(t *testing.T, ch *digest.Challenge, method, target string) string {
	t.Helper()
	auth, err := c.answer(ch, method, target)
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

func (c *client) do(t *testing.T, method, target string, body []byte, hdr map[string]string) reply {
	t.Helper()
	r, err := c.try(method, target, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (c *client) put(t *testing.T, target, contentType, body string, hdr ...string) reply {
	t.Helper()
	h := map[string]string{"Content-Type": contentType}
	for i := 0; i+1 < len(hdr); i += 2 {
		h[hdr[i]] = hdr[i+1]
	}
	return c.do(t, http.MethodPut, target, []byte(body), h)
}

func (c *client) get(t *testing.T, target string, hdr ...string) reply {
	t.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h[hdr[i]] = hdr[i+1]
	}
	return c.do(t, http.MethodGet, target, nil, h)
}

func (c *client) del(t *testing.T, target string, hdr ...string) reply {
	t.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h[hdr[i]] = hdr[i+1]
	}
	return c.do(t, http.MethodDelete, target, nil, h)
}

func want(t *testing.T, r reply, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %d %q, want %d", r.status, r.body, status)
	}
}

// xcapErr checks a 409 with an xcap-error body naming tag.
func xcapErr(t *testing.T, r reply, tag string) {
	t.Helper()
	want(t, r, http.StatusConflict)
	if ct := r.header.Get("Content-Type"); ct != ErrorContentType {
		t.Fatalf("Content-Type %q", ct)
	}
	if !strings.Contains(r.body, `<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><`+tag) {
		t.Fatalf("body %s, want <%s>", r.body, tag)
	}
}

// sel builds the URI of a node of alice's resource-lists index,
// percent-encoding what a URI path cannot hold.
func sel(s string) string { return rlPath + "/~~/" + escapeSelector(s) }

func TestDocument(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")

	// RFC 4825 §7.1: a new document is 201, with its entity tag.
	r := alice.put(t, rlPath, rlType, friends)
	want(t, r, http.StatusCreated)
	etag1 := r.header.Get("ETag")
	if etag1 == "" || etag1[0] != '"' {
		t.Fatalf("ETag %q", etag1)
	}
	if got := ts.store.body("resource-lists", "alice@example.com", "index"); got != friends {
		t.Fatalf("stored %q", got)
	}

	r = alice.get(t, rlPath)
	want(t, r, http.StatusOK)
	if r.body != friends || r.header.Get("Content-Type") != rlType || r.header.Get("ETag") != etag1 {
		t.Fatalf("GET: %q %q %q", r.body, r.header.Get("Content-Type"), r.header.Get("ETag"))
	}

	// A replacement is 200, with a new entity tag.
	replaced := strings.Replace(friends, "Bob", "Robert", 1)
	r = alice.put(t, rlPath, rlType+"; charset=UTF-8", replaced)
	want(t, r, http.StatusOK)
	if etag2 := r.header.Get("ETag"); etag2 == "" || etag2 == etag1 {
		t.Fatalf("ETag after replace %q (was %q)", etag2, etag1)
	}
	if got := alice.get(t, rlPath).body; got != replaced {
		t.Fatalf("GET after replace %q", got)
	}

	want(t, alice.del(t, rlPath), http.StatusOK)
	want(t, alice.get(t, rlPath), http.StatusNotFound)
	want(t, alice.del(t, rlPath), http.StatusNotFound)
	if n := ts.changes.Load(); n != 3 {
		t.Fatalf("OnChange called %d times, want 3", n)
	}
}

func TestDocumentValidation(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")
	cases := []struct{ name, body, tag string }{
		{"not well-formed", `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">`, "not-well-formed"},
		{"not UTF-8", "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\xe9</resource-lists>", "not-utf-8"},
		{"latin-1 declared", `<?xml version="1.0" encoding="ISO-8859-1"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>`, "not-utf-8"},
		{"root in another namespace", `<resource-lists/>`, "schema-validation-error"},
		{"too deep", `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">` + strings.Repeat("<a>", maxDepth) + strings.Repeat("</a>", maxDepth) + `</resource-lists>`, "constraint-failure"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			xcapErr(t, alice.put(t, rlPath, rlType, c.body), c.tag)
		})
	}
	want(t, alice.get(t, rlPath), http.StatusNotFound)
}

func TestValidateHook(t *testing.T) {
	ts := newTestServer(t, Config{}, AUID{
		Name: "resource-lists", ContentType: rlType, Namespace: rlNS,
		Validate: func(body []byte) error {
			if bytes.Contains(body, []byte("sip:dup@")) {
				return &Error{Tag: "uniqueness-failure", Exists: []Exists{{Field: "resource-lists/list/entry/@uri", AltValues: []string{"sip:dup2@example.com"}}}}
			}
			if bytes.Contains(body, []byte("<bad")) {
				return errors.New("element bad is not allowed here")
			}
			return nil
		},
	})
	alice := ts.client("alice", "secret-a")
	r := alice.put(t, rlPath, rlType, strings.Replace(friends, "sip:bob@", "sip:dup@", 1))
	xcapErr(t, r, "uniqueness-failure")
	if !strings.Contains(r.body, `<alt-value>sip:dup2@example.com</alt-value>`) {
		t.Fatalf("body %s", r.body)
	}
	want(t, alice.put(t, rlPath, rlType, friends), http.StatusCreated)
	// The hook sees the document after an element edit too.
	r = alice.put(t, sel(`resource-lists/list/bad`), ElementContentType, `<bad/>`)
	xcapErr(t, r, "schema-validation-error")
	if !strings.Contains(r.body, `phrase="element bad is not allowed here"`) {
		t.Fatalf("body %s", r.body)
	}
	if got := ts.store.body("resource-lists", "alice@example.com", "index"); got != friends {
		t.Fatalf("refused edit stored: %s", got)
	}
}

func TestElement(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")
	want(t, alice.put(t, rlPath, rlType, friends), http.StatusCreated)
	carol := `resource-lists/list[@name="friends"]/entry[@uri="sip:carol@example.com"]`

	// RFC 4825 §8.2.3: insertion is 201.
	r := alice.put(t, sel(carol), ElementContentType, `<entry uri="sip:carol@example.com"/>`)
	want(t, r, http.StatusCreated)
	etag := r.header.Get("ETag")
	r = alice.get(t, sel(carol))
	want(t, r, http.StatusOK)
	if r.body != `<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:carol@example.com"/>` ||
		r.header.Get("Content-Type") != ElementContentType || r.header.Get("ETag") != etag {
		t.Fatalf("GET element: %q %q %q", r.body, r.header.Get("Content-Type"), r.header.Get("ETag"))
	}

	// Replacement is 200.
	r = alice.put(t, sel(carol), ElementContentType, `<entry uri="sip:carol@example.com"><display-name>Carol</display-name></entry>`)
	want(t, r, http.StatusOK)
	// By position, by position and attribute.
	r = alice.get(t, sel(`resource-lists/list[1]/entry[2]/display-name`))
	want(t, r, http.StatusOK)
	if !strings.Contains(r.body, ">Carol<") {
		t.Fatalf("by position: %q", r.body)
	}
	want(t, alice.get(t, sel(`resource-lists/list[1][@name="friends"]/entry[2][@uri="sip:carol@example.com"]`)), http.StatusOK)

	want(t, alice.del(t, sel(carol)), http.StatusOK)
	want(t, alice.get(t, sel(carol)), http.StatusNotFound)
	want(t, alice.del(t, sel(carol)), http.StatusNotFound)
	if got := ts.store.body("resource-lists", "alice@example.com", "index"); got != friends {
		t.Fatalf("after insert and delete: %s", got)
	}
}

func TestElementErrors(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")

	// No document: no parent, the ancestor is the user's directory.
	r := alice.put(t, sel(`resource-lists/list`), ElementContentType, `<list name="x"/>`)
	xcapErr(t, r, "no-parent")
	if !strings.Contains(r.body, "<ancestor>"+ts.URL+"/xcap-root/resource-lists/users/sip:alice@example.com/</ancestor>") {
		t.Fatalf("body %s", r.body)
	}

	want(t, alice.put(t, rlPath, rlType, friends), http.StatusCreated)
	r = alice.put(t, sel(`resource-lists/list[@name="family"]/entry[@uri="sip:x@example.com"]/display-name`), ElementContentType, `<display-name>X</display-name>`)
	xcapErr(t, r, "no-parent")
	if !strings.Contains(r.body, "<ancestor>"+ts.URL+rlPath+"/~~/resource-lists</ancestor>") {
		t.Fatalf("body %s", r.body)
	}
	xcapErr(t, alice.put(t, sel(`resource-lists/list/entry[@uri="sip:y@example.com"]`), ElementContentType, `<entry uri="sip:x@example.com"/>`), "cannot-insert")
	xcapErr(t, alice.put(t, sel(`resource-lists/list/entry[2]`), ElementContentType, `<entry uri="x"><a></entry>`), "not-xml-frag")
	xcapErr(t, alice.put(t, sel(`resource-lists/list/@name`), AttributeContentType, `a<b`), "not-xml-att-value")
	xcapErr(t, alice.del(t, sel(`resource-lists`)), "cannot-delete")
	want(t, alice.get(t, sel(`resource-lists/list/entry[5]`)), http.StatusNotFound)
	want(t, alice.get(t, sel(`resource-lists/list[`)), http.StatusBadRequest)
	want(t, alice.get(t, sel(`resource-lists/q:list`)), http.StatusBadRequest)
	if got := ts.store.body("resource-lists", "alice@example.com", "index"); got != friends {
		t.Fatalf("document changed by failed edits: %s", got)
	}
}

func TestAttribute(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")
	want(t, alice.put(t, rlPath, rlType, friends), http.StatusCreated)

	r := alice.get(t, sel(`resource-lists/list/entry/@uri`))
	want(t, r, http.StatusOK)
	if r.body != "sip:bob@example.com" || r.header.Get("Content-Type") != AttributeContentType || r.header.Get("ETag") == "" {
		t.Fatalf("GET attribute: %q %q", r.body, r.header.Get("Content-Type"))
	}
	want(t, alice.put(t, sel(`resource-lists/list/@class`), AttributeContentType, `a&amp;b`), http.StatusCreated)
	want(t, alice.put(t, sel(`resource-lists/list/entry/@uri`), AttributeContentType, `sip:robert@example.com`), http.StatusOK)
	if r := alice.get(t, sel(`resource-lists/list/@class`)); r.body != "a&amp;b" {
		t.Fatalf("class %q", r.body)
	}
	want(t, alice.del(t, sel(`resource-lists/list/@class`)), http.StatusOK)
	want(t, alice.get(t, sel(`resource-lists/list/@class`)), http.StatusNotFound)
	want(t, alice.del(t, sel(`resource-lists/list/@class`)), http.StatusNotFound)
	if got, want := ts.store.body("resource-lists", "alice@example.com", "index"), strings.Replace(friends, "sip:bob@", "sip:robert@", 1); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestNamespaceBindings(t *testing.T) {
	ts := newTestServer(t, Config{}, AUID{Name: "pres-rules", ContentType: "application/auth-policy+xml", Namespace: cpNS})
	alice := ts.client("alice", "secret-a")
	doc := "/xcap-root/pres-rules/users/sip:alice@example.com/index"
	want(t, alice.put(t, doc, "application/auth-policy+xml", presRules), http.StatusCreated)

	node := doc + "/~~/" + escapeSelector(`ruleset/rule[@id="a"]/actions/p:sub-handling`) + "?xmlns(p=urn:ietf:params:xml:ns:pres-rules)"
	r := alice.get(t, node)
	want(t, r, http.StatusOK)
	if r.body != `<pr:sub-handling xmlns:pr="urn:ietf:params:xml:ns:pres-rules">allow</pr:sub-handling>` {
		t.Fatalf("GET %q", r.body)
	}
	want(t, alice.put(t, node, ElementContentType, `<pr:sub-handling>block</pr:sub-handling>`), http.StatusOK)
	if got := alice.get(t, doc).body; got != strings.Replace(presRules, "allow", "block", 1) {
		t.Fatalf("document %s", got)
	}
	// Without the binding the prefix means nothing.
	want(t, alice.get(t, doc+"/~~/"+escapeSelector(`ruleset/rule/actions/p:sub-handling`)), http.StatusBadRequest)

	// namespace::* gives the bindings in scope, read-only.
	ns := doc + "/~~/" + escapeSelector(`ruleset/rule/namespace::*`)
	r = alice.get(t, ns)
	want(t, r, http.StatusOK)
	if r.body != `<cr:rule xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules"/>` || r.header.Get("Content-Type") != NamespaceContentType {
		t.Fatalf("namespace::* %q %q", r.body, r.header.Get("Content-Type"))
	}
	r = alice.del(t, ns)
	want(t, r, http.StatusMethodNotAllowed)
	if r.header.Get("Allow") != "GET" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
}

func TestPercentEncodedXUI(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")
	want(t, alice.put(t, "/xcap-root/resource-lists/users/sip%3AAlice%40Example.COM/index", rlType, friends), http.StatusCreated)
	// The same document under the plain XUI: the key is lower case.
	if r := alice.get(t, rlPath); r.status != http.StatusOK || r.body != friends {
		t.Fatalf("got %d %q", r.status, r.body)
	}
}

func TestConditional(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")
	want(t, alice.put(t, rlPath, rlType, friends, "If-Match", "*"), http.StatusPreconditionFailed)
	r := alice.put(t, rlPath, rlType, friends, "If-None-Match", "*")
	want(t, r, http.StatusCreated)
	etag := r.header.Get("ETag")
	want(t, alice.put(t, rlPath, rlType, friends, "If-None-Match", "*"), http.StatusPreconditionFailed)

	// GET: If-None-Match with the current tag is 304, If-Match with
	// another 412.
	r = alice.get(t, rlPath, "If-None-Match", etag)
	want(t, r, http.StatusNotModified)
	if r.header.Get("ETag") != etag {
		t.Fatalf("304 ETag %q", r.header.Get("ETag"))
	}
	want(t, alice.get(t, rlPath, "If-Match", `"stale"`), http.StatusPreconditionFailed)
	want(t, alice.get(t, rlPath, "If-Match", `W/`+etag), http.StatusPreconditionFailed) // If-Match compares strongly
	want(t, alice.get(t, rlPath, "If-None-Match", `"other", `+etag), http.StatusNotModified)

	carol := sel(`resource-lists/list/entry[@uri="sip:carol@example.com"]`)
	want(t, alice.put(t, carol, ElementContentType, `<entry uri="sip:carol@example.com"/>`, "If-Match", `"stale"`), http.StatusPreconditionFailed)
	r = alice.put(t, carol, ElementContentType, `<entry uri="sip:carol@example.com"/>`, "If-Match", `"x", `+etag)
	want(t, r, http.StatusCreated)
	etag2 := r.header.Get("ETag")
	want(t, alice.del(t, carol, "If-Match", etag), http.StatusPreconditionFailed)
	want(t, alice.del(t, carol, "If-None-Match", etag2), http.StatusPreconditionFailed)
	want(t, alice.del(t, rlPath, "If-Match", etag), http.StatusPreconditionFailed)
	want(t, alice.del(t, rlPath, "If-Match", etag2), http.StatusOK)
}

// racingStore lets another writer slip in between a request's read and
// its write, once per call to arm.
type racingStore struct {
	*memStore
	armed atomic.Bool
	race  func()
}

func (s *racingStore) PutDocument(ctx context.Context, auid, user, name string, body []byte, ifETag string) (string, error) {
	if s.armed.CompareAndSwap(true, false) {
		s.race()
	}
	return s.memStore.PutDocument(ctx, auid, user, name, body, ifETag)
}

func TestLostUpdateRetried(t *testing.T) {
	ts := newTestServer(t, Config{})
	rs := &racingStore{memStore: ts.store}
	ts.xcap.auids["resource-lists"].Store = rs
	alice := ts.client("alice", "secret-a")
	want(t, alice.put(t, rlPath, rlType, friends), http.StatusCreated)

	// Another node adds dave between this request's read and write.
	rs.race = func() {
		body, etag, err := ts.store.Document(context.Background(), "resource-lists", "alice@example.com", "index")
		if err != nil {
			t.Error(err)
			return
		}
		next, err := Apply(body, rlNS, `resource-lists/list/entry[@uri="sip:dave@example.com"]`, nil, OpPut, []byte(`<entry uri="sip:dave@example.com"/>`))
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := ts.store.PutDocument(context.Background(), "resource-lists", "alice@example.com", "index", next, etag); err != nil {
			t.Error(err)
		}
	}
	rs.armed.Store(true)
	before := ts.store.puts.Load()
	want(t, alice.put(t, sel(`resource-lists/list/entry[@uri="sip:carol@example.com"]`), ElementContentType, `<entry uri="sip:carol@example.com"/>`), http.StatusCreated)
	if n := ts.store.puts.Load() - before; n != 3 { // the race's, the lost one, the retried one
		t.Fatalf("%d writes, want 3", n)
	}
	got := ts.store.body("resource-lists", "alice@example.com", "index")
	if !strings.Contains(got, "sip:carol@") || !strings.Contains(got, "sip:dave@") {
		t.Fatalf("an update was lost: %s", got)
	}

	// With If-Match the client asked for that version only: 412.
	r := alice.get(t, rlPath)
	rs.armed.Store(true)
	rs.race = func() {
		_, etag, _ := ts.store.Document(context.Background(), "resource-lists", "alice@example.com", "index")
		if _, err := ts.store.PutDocument(context.Background(), "resource-lists", "alice@example.com", "index", []byte(friends), etag); err != nil {
			t.Error(err)
		}
	}
	want(t, alice.put(t, sel(`resource-lists/list/entry[@uri="sip:eve@example.com"]`), ElementContentType, `<entry uri="sip:eve@example.com"/>`, "If-Match", r.header.Get("ETag")), http.StatusPreconditionFailed)
}

func TestConcurrentPuts(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")
	want(t, alice.put(t, rlPath, rlType, friends), http.StatusCreated)
	const n = 24
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			uri := fmt.Sprintf("sip:u%d@example.com", i)
			r, err := alice.try(http.MethodPut, sel(`resource-lists/list/entry[@uri="`+uri+`"]`), []byte(`<entry uri="`+uri+`"/>`),
				map[string]string{"Content-Type": ElementContentType})
			if err != nil {
				t.Error(err)
			}
			statuses[i] = r.status
		})
	}
	wg.Wait()
	got := ts.store.body("resource-lists", "alice@example.com", "index")
	for i := range n {
		if statuses[i] != http.StatusCreated {
			t.Errorf("PUT %d: %d", i, statuses[i])
		}
		if !strings.Contains(got, fmt.Sprintf(`"sip:u%d@example.com"`, i)) {
			t.Errorf("entry %d lost", i)
		}
	}
	if c := strings.Count(got, "<entry "); c != n+1 {
		t.Errorf("%d entries, want %d", c, n+1)
	}
}

func TestAuthentication(t *testing.T) {
	ts := newTestServer(t, Config{})
	alice := ts.client("alice", "secret-a")

	// No credentials: a SHA-256 and an MD5 challenge, one nonce, realm the
	// XUI's domain (RFC 7616 §3.7).
	r := alice.raw(t, http.MethodGet, rlPath, nil, nil, "")
	want(t, r, http.StatusUnauthorized)
	chs := r.header.Values("WWW-Authenticate")
	if len(chs) != 2 {
		t.Fatalf("challenges %v", chs)
	}
	sha, err1 := digest.ParseChallenge(chs[0])
	md, err2 := digest.ParseChallenge(chs[1])
	if err1 != nil || err2 != nil || sha.Algorithm != "SHA-256" || md.Algorithm != "MD5" || sha.Nonce != md.Nonce ||
		sha.Realm != "example.com" || len(sha.QOP) != 1 || sha.QOP[0] != "auth" || sha.Stale {
		t.Fatalf("challenges %v", chs)
	}

	// Both algorithms pass; the document does not exist yet.
	want(t, alice.get(t, rlPath), http.StatusNotFound)
	md5c := ts.client("alice", "secret-a")
	md5c.alg = "MD5"
	want(t, md5c.get(t, rlPath), http.StatusNotFound)

	// Wrong password and unknown user look the same.
	want(t, ts.client("alice", "wrong").get(t, rlPath), http.StatusUnauthorized)
	want(t, ts.client("mallory", "x").get(t, rlPath), http.StatusUnauthorized)

	// The credentials must be for the request's URI.
	ch := alice.challenge(t, alice.raw(t, http.MethodGet, rlPath, nil, nil, ""))
	other := "/xcap-root/resource-lists/users/sip:alice@example.com/other"
	want(t, alice.raw(t, http.MethodGet, rlPath, nil, nil, alice.authorization(t, ch, http.MethodGet, other)), http.StatusUnauthorized)
	// ... and method.
	want(t, alice.raw(t, http.MethodDelete, rlPath, nil, nil, alice.authorization(t, ch, http.MethodGet, rlPath)), http.StatusUnauthorized)
	// A nonce of another realm is not taken.
	bobPath := "/xcap-root/resource-lists/users/sip:bob@example.org/index"
	chOther := alice.challenge(t, alice.raw(t, http.MethodGet, bobPath, nil, nil, ""))
	if chOther.Realm != "example.org" {
		t.Fatalf("realm %q", chOther.Realm)
	}
	forged := *ch
	forged.Nonce = chOther.Nonce
	r = alice.raw(t, http.MethodGet, rlPath, nil, nil, alice.authorization(t, &forged, http.MethodGet, rlPath))
	want(t, r, http.StatusUnauthorized)
	if c := alice.challenge(t, r); !c.Stale {
		t.Fatal("a right password with a foreign nonce should get stale=true")
	}

	// Bob, authenticated, may not touch Alice's documents.
	want(t, ts.client("bob", "secret-b").get(t, rlPath), http.StatusForbidden)
}

func TestUsernameWithDomain(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.fullUsernameHash.Store(true)
	c := ts.client("alice@example.com", "secret-a")
	want(t, c.put(t, rlPath, rlType, friends), http.StatusCreated)
	ts.mu.Lock()
	calls := ts.ha1Calls
	ts.mu.Unlock()
	if len(calls) == 0 || calls[len(calls)-1] != "alice@example.com" {
		t.Fatalf("HA1 asked about %v, want alice at example.com", calls)
	}
	// Another domain in the username is not this realm's user.
	want(t, ts.client("alice@example.org", "secret-a").get(t, rlPath), http.StatusUnauthorized)
}

func TestStaleNonce(t *testing.T) {
	ts := newTestServer(t, Config{NonceLifetime: time.Minute})
	alice := ts.client("alice", "secret-a")
	ch := alice.challenge(t, alice.raw(t, http.MethodGet, rlPath, nil, nil, ""))
	auth := alice.authorization(t, ch, http.MethodGet, rlPath)
	want(t, alice.raw(t, http.MethodGet, rlPath, nil, nil, auth), http.StatusNotFound)

	ts.now.Add(int64(time.Minute + time.Second))
	r := alice.raw(t, http.MethodGet, rlPath, nil, nil, auth)
	want(t, r, http.StatusUnauthorized)
	if c := alice.challenge(t, r); !c.Stale || c.Nonce == ch.Nonce {
		t.Fatalf("stale %v, same nonce %v", c.Stale, c.Nonce == ch.Nonce)
	}
	// A wrong password with an old nonce is just wrong: no stale.
	bad := ts.client("alice", "wrong")
	r = bad.raw(t, http.MethodGet, rlPath, nil, nil, bad.authorization(t, ch, http.MethodGet, rlPath))
	if c := bad.challenge(t, r); c.Stale {
		t.Fatal("stale=true for a wrong password")
	}
}

func TestHTTPErrors(t *testing.T) {
	ts := newTestServer(t, Config{MaxDocument: 1024})
	alice := ts.client("alice", "secret-a")

	// 404 before authentication for what does not exist for anyone.
	for _, p := range []string{
		"/other/resource-lists/users/sip:alice@example.com/index",
		"/xcap-root/unknown/users/sip:alice@example.com/index",
		"/xcap-root/resource-lists/global/index",
		"/xcap-root/resource-lists/users/sip:alice@example.com",
		"/xcap-root/resource-lists/users/alice/index",
		"/xcap-root/resource-lists/users/sip:alice@example.com/../index",
		"/xcap-root/xcap-caps/users/sip:alice@example.com/index",
		"/xcap-root/xcap-caps/global/other",
	} {
		if r := alice.raw(t, http.MethodGet, p, nil, nil, ""); r.status != http.StatusNotFound {
			t.Errorf("%s: %d", p, r.status)
		}
	}

	r := alice.raw(t, http.MethodPost, rlPath, nil, nil, "")
	want(t, r, http.StatusMethodNotAllowed)
	if r.header.Get("Allow") != "GET, PUT, DELETE" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}

	// 413, by Content-Length and by a body without one.
	big := `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">` + strings.Repeat(" ", 1024) + `</resource-lists>`
	want(t, alice.raw(t, http.MethodPut, rlPath, []byte(big), map[string]string{"Content-Type": rlType}, ""), http.StatusRequestEntityTooLarge)
	ch := alice.challenge(t, alice.raw(t, http.MethodPut, rlPath, nil, nil, ""))
	req, _ := http.NewRequest(http.MethodPut, ts.URL+rlPath, io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", rlType)
	req.Header.Set("Authorization", alice.authorization(t, ch, http.MethodPut, rlPath))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: %d", resp.StatusCode)
	}

	// 415 for a type that is not the node's.
	want(t, alice.put(t, rlPath, "application/xml", friends), http.StatusUnsupportedMediaType)
	want(t, alice.put(t, rlPath, rlType, friends), http.StatusCreated)
	want(t, alice.put(t, sel(`resource-lists/list/entry[2]`), rlType, `<entry/>`), http.StatusUnsupportedMediaType)
	want(t, alice.put(t, sel(`resource-lists/list/@name`), ElementContentType, `x`), http.StatusUnsupportedMediaType)
	want(t, alice.put(t, sel(`resource-lists/list/entry[2]`), "", `<entry/>`), http.StatusUnsupportedMediaType)

	// An element edit that would outgrow the limit.
	r = alice.put(t, sel(`resource-lists/list/entry[2]`), ElementContentType, `<entry uri="`+strings.Repeat("x", 900)+`"/>`)
	xcapErr(t, r, "constraint-failure")
}

func TestCaps(t *testing.T) {
	ts := newTestServer(t, Config{},
		AUID{Name: "resource-lists", ContentType: rlType, Namespace: rlNS},
		AUID{Name: "pres-rules", ContentType: "application/auth-policy+xml", Namespace: cpNS})
	alice := ts.client("alice", "secret-a")
	alice.host = "example.com:443"
	const caps = "/xcap-root/xcap-caps/global/index"
	r := alice.get(t, caps)
	want(t, r, http.StatusOK)
	if r.header.Get("Content-Type") != "application/xcap-caps+xml" || r.header.Get("ETag") == "" {
		t.Fatalf("headers %v", r.header)
	}
	for _, s := range []string{"<auid>xcap-caps</auid>", "<auid>resource-lists</auid>", "<auid>pres-rules</auid>",
		"<namespace>" + rlNS + "</namespace>", "<namespace>" + cpNS + "</namespace>", "<namespace>" + ErrorNamespace + "</namespace>"} {
		if !strings.Contains(r.body, s) {
			t.Errorf("no %s in %s", s, r.body)
		}
	}
	r = alice.get(t, caps+"/~~/xcap-caps/auids/auid[2]")
	if r.status != http.StatusOK || r.body != `<auid xmlns="urn:ietf:params:xml:ns:xcap-caps">resource-lists</auid>` {
		t.Fatalf("caps node: %d %q", r.status, r.body)
	}
	// Any subscriber may read it; nobody may write it.
	bob := ts.client("bob", "secret-b")
	bob.host = "example.com"
	want(t, bob.get(t, caps), http.StatusOK)
	r = bob.put(t, caps, "application/xcap-caps+xml", "<x/>")
	want(t, r, http.StatusMethodNotAllowed)
	if r.header.Get("Allow") != "GET" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	want(t, ts.client("alice", "wrong").get(t, caps), http.StatusUnauthorized)
}

func TestNew(t *testing.T) {
	st := newMemStore()
	ha1 := func(context.Context, string, string, digest.Algorithm) (string, error) { return "", errors.New("x") }
	ok := AUID{Name: "resource-lists", ContentType: rlType, Namespace: rlNS}
	cases := []struct {
		name  string
		cfg   Config
		env   Env
		auids []AUID
	}{
		{"no store", Config{}, Env{HA1: ha1}, nil},
		{"no HA1", Config{}, Env{Store: st}, nil},
		{"negative size", Config{MaxDocument: -1}, Env{Store: st, HA1: ha1}, nil},
		{"negative lifetime", Config{NonceLifetime: -1}, Env{Store: st, HA1: ha1}, nil},
		{"AUID twice", Config{}, Env{Store: st, HA1: ha1}, []AUID{ok, ok}},
		{"xcap-caps taken", Config{}, Env{Store: st, HA1: ha1}, []AUID{{Name: "xcap-caps", ContentType: "x"}}},
		{"no content type", Config{}, Env{Store: st, HA1: ha1}, []AUID{{Name: "a"}}},
		{"slash in name", Config{}, Env{Store: st, HA1: ha1}, []AUID{{Name: "a/b", ContentType: "x"}}},
		{"bad root", Config{Root: "/x?y"}, Env{Store: st, HA1: ha1}, nil},
	}
	for _, c := range cases {
		if _, err := New(c.cfg, c.env, c.auids...); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	s, err := New(Config{Root: "/dav/"}, Env{Store: st, HA1: ha1}, ok)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Root != "/dav" || s.cfg.MaxDocument != DefaultMaxDocument || s.cfg.NonceLifetime != DefaultNonceLifetime {
		t.Fatalf("defaults %+v", s.cfg)
	}
}
