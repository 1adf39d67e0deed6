package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/registrar"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// fakeRegistrar is a location service in a map.
type fakeRegistrar struct {
	mu sync.Mutex
	m  map[string][]registrar.Binding
}

func (f *fakeRegistrar) Lookup(aor string) []registrar.Binding {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]registrar.Binding(nil), f.m[aor]...)
}

func (f *fakeRegistrar) Remove(aor, id string, updated time.Time, why string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bs := f.m[aor]
	for i, b := range bs {
		if b.ID == id && b.Updated.Equal(updated) {
			f.m[aor] = append(bs[:i:i], bs[i+1:]...)
			return true, nil
		}
	}
	return false, nil
}

type fixture struct {
	t        *testing.T
	st       store.Store
	reg      *fakeRegistrar
	srv      *httptest.Server
	api      *API
	prom     *prometheus.Registry
	token    string // read-write
	roToken  string // read-only
	failedMu sync.Mutex
	failed   []netip.Addr
	now      time.Time
	calls    *fakeCalls
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "hlas.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, st: st, reg: &fakeRegistrar{m: map[string][]registrar.Binding{}}, prom: prometheus.NewRegistry(),
		now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), calls: &fakeCalls{}}
	f.token = f.addToken("ops", false)
	f.roToken = f.addToken("grafana", true)
	f.api, err = New(cfg, Env{
		Store: st, Registrar: f.reg, Registerer: f.prom,
		Now: func() time.Time { return f.now },
		Presence: func(aor string) Presentity {
			return Presentity{AOR: aor, Document: "<presence entity=\"sip:" + aor + "\"/>"}
		},
		Stats: func() any { return map[string]any{"version": "test", "uptime_seconds": 1.5} },
		Calls: f.calls,
		AuthFailed: func(src netip.Addr) {
			f.failedMu.Lock()
			f.failed = append(f.failed, src)
			f.failedMu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.api)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) addToken(name string, ro bool) string {
	tok, hash, err := NewToken()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.AddAPIToken(context.Background(), store.APIToken{Name: name, Hash: hash, ReadOnly: ro}); err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// do sends a request with token (none when "") and returns the status and
// the body.
func (f *fixture) do(token, method, path, body string) (int, string, http.Header) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

// must is do for a request that must get want; it decodes the JSON answer
// into v when v is not nil.
func (f *fixture) must(want int, method, path, body string, v any) {
	f.t.Helper()
	code, b, _ := f.do(f.token, method, path, body)
	if code != want {
		f.t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(b), v); err != nil {
			f.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

func errorOf(t *testing.T, body string) Error {
	t.Helper()
	var e Error
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Message == "" {
		t.Fatalf("not an error answer: %q (%v)", body, err)
	}
	return e
}

func TestAPIHealthWithoutToken(t *testing.T) {
	f := newFixture(t, Config{})
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body, _ := f.do("", "GET", p, ""); code != 200 {
			t.Errorf("GET %s = %d %s", p, code, body)
		}
	}
	if len(f.failed) != 0 {
		t.Errorf("open endpoints reported auth failures: %v", f.failed)
	}
}

func TestAPIReadyzNotReady(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "hlas.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := New(Config{}, Env{Store: st, Registrar: &fakeRegistrar{}, Ready: func() error { return io.ErrClosedPipe }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("readyz while not ready = %d", rec.Code)
	}
}

func TestAPIAuth(t *testing.T) {
	f := newFixture(t, Config{})
	other, _, _ := NewToken()
	cases := []struct {
		name, auth string
	}{
		{"missing", ""},
		{"not bearer", "Basic " + f.token},
		{"unknown token", "Bearer " + other},
		{"short", "Bearer abc"},
		{"token with a character changed", "Bearer " + f.token[:len(f.token)-1] + flip(f.token[len(f.token)-1])},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/subscribers", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		res, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %s, WWW-Authenticate %q; want 401 with a Bearer challenge", c.name, res.StatusCode, b, res.Header.Get("WWW-Authenticate"))
		}
		errorOf(t, string(b))
	}
	if got := testutil.ToFloat64(f.api.authFailures); got != float64(len(cases)) {
		t.Errorf("auth_failures_total = %v, want %d", got, len(cases))
	}
	f.failedMu.Lock()
	if len(f.failed) != len(cases) || f.failed[0] != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("reported to the guard: %v", f.failed)
	}
	f.failedMu.Unlock()
	// Both tokens read; only the read-write one writes.
	for _, tok := range []string{f.token, f.roToken} {
		if code, b, _ := f.do(tok, "GET", "/api/v1/subscribers", ""); code != 200 {
			t.Errorf("GET with a valid token = %d %s", code, b)
		}
	}
	code, b, _ := f.do(f.roToken, "POST", "/api/v1/subscribers", `{"aor":"a@example.com","password":"x"}`)
	if code != 403 {
		t.Errorf("write with a read-only token = %d %s, want 403", code, b)
	}
	if _, err := f.st.User(context.Background(), "a", "example.com"); err == nil {
		t.Error("the read-only token's write was made")
	}
	// A deleted token stops working at once.
	if err := f.st.DeleteAPIToken(context.Background(), "grafana"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := f.do(f.roToken, "GET", "/api/v1/subscribers", ""); code != 401 {
		t.Errorf("deleted token = %d, want 401", code)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestAPIBannedSource(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "hlas.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok, hash, _ := NewToken()
	if err := st.AddAPIToken(context.Background(), store.APIToken{Name: "x", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{}, Env{Store: st, Registrar: &fakeRegistrar{}, Banned: func(ip netip.Addr) bool { return ip.String() == "192.0.2.9" }})
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		addr string
		want int
	}{{"192.0.2.9:4000", 403}, {"192.0.2.10:4000", 200}} {
		req := httptest.NewRequest("GET", "/api/v1/stats", nil)
		req.RemoteAddr = src.addr
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code != src.want {
			t.Errorf("from %s: %d, want %d", src.addr, rec.Code, src.want)
		}
	}
}

func TestAPISubscribers(t *testing.T) {
	f := newFixture(t, Config{})
	var s Subscriber
	f.must(201, "POST", "/api/v1/subscribers", `{"aor":"alice@Example.com","password":"secret"}`, &s)
	if s.AOR != "alice@example.com" || s.Created.IsZero() {
		t.Errorf("created %+v", s)
	}
	u, err := f.st.User(context.Background(), "alice", "example.com")
	if err != nil || u.HA1MD5 != auth.NewUser("alice", "example.com", "secret").HA1MD5 {
		t.Fatalf("stored %+v, %v", u, err)
	}
	if code, b, _ := f.do(f.token, "POST", "/api/v1/subscribers", `{"aor":"alice@example.com","password":"x"}`); code != 409 || errorOf(t, b).Field != "aor" {
		t.Errorf("duplicate = %d %s, want 409 naming aor", code, b)
	}
	for _, c := range []struct{ body, field string }{
		{`{"aor":"nodomain","password":"x"}`, "aor"},
		{`{"aor":"bob@example.com"}`, "password"},
		{`{"aor":"bob@example.com","password":"x","admin":true}`, "admin"},
		{`{"aor":42,"password":"x"}`, "aor"},
	} {
		code, b, _ := f.do(f.token, "POST", "/api/v1/subscribers", c.body)
		if code != 400 || errorOf(t, b).Field != c.field {
			t.Errorf("%s = %d %s, want 400 naming %s", c.body, code, b, c.field)
		}
	}
	f.must(201, "POST", "/api/v1/subscribers", `{"aor":"bob@example.com","password":"pw"}`, nil)
	f.must(201, "POST", "/api/v1/subscribers", `{"aor":"carol@example.org","password":"pw"}`, nil)
	var l List[Subscriber]
	f.must(200, "GET", "/api/v1/subscribers", "", &l)
	if len(l.Items) != 3 || l.NextOffset != nil || l.Items[0].AOR != "alice@example.com" {
		t.Errorf("list = %+v", l)
	}
	f.must(200, "GET", "/api/v1/subscribers?domain=example.org", "", &l)
	if len(l.Items) != 1 || l.Items[0].AOR != "carol@example.org" {
		t.Errorf("list of example.org = %+v", l)
	}
	f.must(200, "GET", "/api/v1/subscribers/bob@example.com", "", &s)
	if s.Username != "bob" || s.Domain != "example.com" {
		t.Errorf("get = %+v", s)
	}
	f.must(404, "GET", "/api/v1/subscribers/nobody@example.com", "", nil)
	f.must(400, "GET", "/api/v1/subscribers/nobody", "", nil)
	f.must(204, "PUT", "/api/v1/subscribers/bob@example.com/password", `{"password":"new"}`, nil)
	if u, _ := f.st.User(context.Background(), "bob", "example.com"); u.HA1SHA256 != auth.NewUser("bob", "example.com", "new").HA1SHA256 {
		t.Error("password not changed")
	}
	f.must(404, "PUT", "/api/v1/subscribers/nobody@example.com/password", `{"password":"new"}`, nil)
	f.must(204, "DELETE", "/api/v1/subscribers/bob@example.com", "", nil)
	f.must(404, "DELETE", "/api/v1/subscribers/bob@example.com", "", nil)
}

func TestAPIPaging(t *testing.T) {
	f := newFixture(t, Config{})
	var us []store.User
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		us = append(us, auth.NewUser(n, "example.com", "pw"))
	}
	if err := f.st.PutUsers(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	var seen []string
	path := "/api/v1/subscribers?limit=2"
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("more pages than records")
		}
		var l List[Subscriber]
		f.must(200, "GET", path, "", &l)
		for _, s := range l.Items {
			seen = append(seen, s.Username)
		}
		if l.NextOffset == nil {
			break
		}
		path = "/api/v1/subscribers?limit=2&offset=" + itoa(*l.NextOffset)
	}
	if strings.Join(seen, "") != "abcde" {
		t.Errorf("pages gave %v", seen)
	}
	var l List[Subscriber]
	f.must(200, "GET", "/api/v1/subscribers?offset=10", "", &l)
	if len(l.Items) != 0 || l.Items == nil {
		t.Errorf("past the end: %+v (want an empty array)", l)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "offset=-1", "offset=100001", "bogus=1"} {
		code, b, _ := f.do(f.token, "GET", "/api/v1/subscribers?"+q, "")
		want, _, _ := strings.Cut(q, "=")
		if code != 400 || errorOf(t, b).Field != want {
			t.Errorf("?%s = %d %s, want 400 naming %s", q, code, b, want)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestAPIBodies(t *testing.T) {
	f := newFixture(t, Config{MaxBody: 256})
	cases := []struct {
		name, body string
		code       int
	}{
		{"empty", "", 400},
		{"malformed", `{"aor":`, 400},
		{"not an object", `[1,2]`, 400},
		{"trailing text", `{"aor":"x@example.com","password":"p"} {}`, 400},
		{"huge", `{"aor":"x@example.com","password":"` + strings.Repeat("p", 1000) + `"}`, 413},
		{"huge whitespace after", `{"aor":"x@example.com","password":"p"}` + strings.Repeat(" ", 1000), 413},
	}
	for _, c := range cases {
		code, b, _ := f.do(f.token, "POST", "/api/v1/subscribers", c.body)
		if code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, code, b, c.code)
			continue
		}
		errorOf(t, b)
	}
	if us, _ := f.st.ListUsers(context.Background(), ""); len(us) != 0 {
		t.Errorf("bad bodies stored %v", us)
	}
}

func TestAPIRegistrations(t *testing.T) {
	f := newFixture(t, Config{})
	now := f.now
	contact, err := sip.ParseAddress("<sip:alice@192.0.2.1:5060>")
	if err != nil {
		t.Fatal(err)
	}
	f.reg.m["alice@example.com"] = []registrar.Binding{
		{AOR: "alice@example.com", ID: "1", Contact: contact, Q: 500, Expires: now.Add(time.Hour), Updated: now, Transport: "UDP",
			Source: netip.MustParseAddrPort("192.0.2.1:5060")},
		{AOR: "alice@example.com", ID: "2", Contact: contact, Q: 1000, Expires: now.Add(time.Hour), Updated: now, Transport: "TCP"},
	}
	f.reg.m["bob@example.com"] = []registrar.Binding{{AOR: "bob@example.com", ID: "9", Contact: contact, Expires: now.Add(time.Hour), Updated: now}}
	if err := f.st.WriteBindings(context.Background(), []store.Binding{
		{AOR: "bob@example.com", ID: "9", Contact: "<sip:bob@192.0.2.2>", Q: 1000, Expires: now.Add(time.Hour), Updated: now, Transport: "UDP"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	var l List[Registration]
	f.must(200, "GET", "/api/v1/registrations?aor=sip:alice@EXAMPLE.com", "", &l)
	if len(l.Items) != 2 || l.Items[0].ID != "1" || l.Items[0].Q != 0.5 || l.Items[0].Source != "192.0.2.1:5060" || l.Items[0].Contact != "<sip:alice@192.0.2.1:5060>" {
		t.Errorf("alice's = %+v", l.Items)
	}
	f.must(200, "GET", "/api/v1/registrations", "", &l)
	if len(l.Items) != 1 || l.Items[0].AOR != "bob@example.com" || l.Items[0].Contact != "<sip:bob@192.0.2.2>" {
		t.Errorf("stored = %+v", l.Items)
	}
	f.must(400, "GET", "/api/v1/registrations?aor=bad", "", nil)
	f.must(204, "DELETE", "/api/v1/registrations/alice@example.com/2", "", nil)
	f.must(404, "DELETE", "/api/v1/registrations/alice@example.com/2", "", nil)
	if bs := f.reg.Lookup("alice@example.com"); len(bs) != 1 || bs[0].ID != "1" {
		t.Errorf("after deleting binding 2: %+v", bs)
	}
	var u Unregistered
	f.must(200, "DELETE", "/api/v1/registrations/bob@example.com", "", &u)
	if u.Removed != 1 || len(f.reg.Lookup("bob@example.com")) != 0 {
		t.Errorf("unregister bob: %+v", u)
	}
	f.must(404, "DELETE", "/api/v1/registrations/bob@example.com", "", nil)
	if code, _, _ := f.do(f.roToken, "DELETE", "/api/v1/registrations/alice@example.com", ""); code != 403 {
		t.Errorf("read-only unregister = %d", code)
	}
}

func TestAPICDRs(t *testing.T) {
	f := newFixture(t, Config{})
	base := f.now.Add(-time.Hour)
	var recs []store.CDR
	for i := range 5 {
		status, code := "answered", 200
		if i%2 == 1 {
			status, code = "failed", 486
		}
		recs = append(recs, store.CDR{ID: "r" + itoa(i), Kind: "call", Status: status, Code: code, CallID: "c" + itoa(i),
			Caller: "alice@example.com", Callee: "bob@example.com", Start: base.Add(time.Duration(i) * time.Minute),
			End: base.Add(time.Duration(i)*time.Minute + 30*time.Second)})
	}
	if err := f.st.WriteCDRs(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Items []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"items"`
		NextOffset *int `json:"next_offset"`
	}
	var l page
	l = page{}
	f.must(200, "GET", "/api/v1/cdrs?limit=2", "", &l)
	if len(l.Items) != 2 || l.Items[0].ID != "r0" || l.NextOffset == nil || *l.NextOffset != 2 {
		t.Errorf("first page = %+v", l)
	}
	l = page{}
	f.must(200, "GET", "/api/v1/cdrs?limit=2&offset=4", "", &l)
	if len(l.Items) != 1 || l.Items[0].ID != "r4" || l.NextOffset != nil {
		t.Errorf("last page = %+v", l)
	}
	l = page{}
	f.must(200, "GET", "/api/v1/cdrs?status=486", "", &l)
	if len(l.Items) != 2 || l.Items[0].ID != "r1" || l.Items[1].ID != "r3" {
		t.Errorf("status=486 = %+v", l)
	}
	l = page{}
	f.must(200, "GET", "/api/v1/cdrs?since=30m&user=bob", "", &l)
	if len(l.Items) != 0 {
		t.Errorf("since=30m = %+v, want none (all started an hour ago)", l)
	}
	l = page{}
	f.must(200, "GET", "/api/v1/cdrs?since="+base.Add(3*time.Minute).Format(time.RFC3339)+"&user=alice@example.com", "", &l)
	if len(l.Items) != 2 || l.Items[0].ID != "r3" {
		t.Errorf("since r3 = %+v", l)
	}
	code, body, h := f.do(f.token, "GET", "/api/v1/cdrs?format=csv&limit=3", "")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") || len(lines) != 4 || !strings.Contains(lines[1], "r0") || h.Get("X-Next-Offset") != "3" {
		t.Errorf("csv = %d %q %q next %q", code, h.Get("Content-Type"), body, h.Get("X-Next-Offset"))
	}
	for _, q := range []string{"since=yesterday", "until=x", "status=ok", "kind=fax", "format=xml"} {
		code, b, _ := f.do(f.token, "GET", "/api/v1/cdrs?"+q, "")
		want, _, _ := strings.Cut(q, "=")
		if code != 400 || errorOf(t, b).Field != want {
			t.Errorf("?%s = %d %s, want 400 naming %s", q, code, b, want)
		}
	}
}

func TestAPIBans(t *testing.T) {
	f := newFixture(t, Config{})
	var b Ban
	f.must(201, "POST", "/api/v1/bans", `{"source":"192.0.2.7","for":"30m","reason":"test"}`, &b)
	if b.Source != "192.0.2.7/32" || b.Expires == nil || !b.Expires.Equal(f.now.Add(30*time.Minute)) || !b.Manual {
		t.Errorf("ban = %+v", b)
	}
	b = Ban{}
	f.must(201, "POST", "/api/v1/bans", `{"source":"2001:db8:1:2::5/64"}`, &b)
	if b.Source != "2001:db8:1:2::/64" || b.Expires != nil {
		t.Errorf("ban = %+v", b)
	}
	for _, c := range []struct{ body, field string }{
		{`{"source":"example.com"}`, "source"},
		{`{"source":"192.0.2.1","for":"-1h"}`, "for"},
		{`{"source":"192.0.2.1","until":"1h"}`, "until"},
	} {
		code, body, _ := f.do(f.token, "POST", "/api/v1/bans", c.body)
		if code != 400 || errorOf(t, body).Field != c.field {
			t.Errorf("%s = %d %s, want 400 naming %s", c.body, code, body, c.field)
		}
	}
	var l List[Ban]
	f.must(200, "GET", "/api/v1/bans", "", &l)
	if len(l.Items) != 2 || l.Items[0].Source != "192.0.2.7/32" {
		t.Errorf("bans = %+v", l)
	}
	f.must(204, "DELETE", "/api/v1/bans/2001:db8:1:2::/64", "", nil)
	f.must(204, "DELETE", "/api/v1/bans/192.0.2.7", "", nil)
	f.must(404, "DELETE", "/api/v1/bans/192.0.2.7", "", nil)
	f.must(400, "DELETE", "/api/v1/bans/nothing", "", nil)
	if bs, _ := f.st.Bans(context.Background(), f.now); len(bs) != 0 {
		t.Errorf("left %v", bs)
	}
}

func TestAPIPresenceAndMWI(t *testing.T) {
	f := newFixture(t, Config{})
	var p Presentity
	f.must(200, "GET", "/api/v1/presence/alice@example.com", "", &p)
	if p.AOR != "alice@example.com" || !strings.Contains(p.Document, "sip:alice@example.com") || p.Publications == nil {
		t.Errorf("presence = %+v", p)
	}
	var m MWI
	f.must(200, "GET", "/api/v1/presence/alice@example.com/mwi", "", &m)
	if m.New != 0 || m.Updated != nil {
		t.Errorf("unset mwi = %+v", m)
	}
	f.must(200, "PUT", "/api/v1/presence/Alice@Example.com/mwi", `{"new":3,"old":1,"urgent_new":1}`, &m)
	if m.AOR != "alice@example.com" || m.New != 3 {
		t.Errorf("set = %+v", m)
	}
	mb, err := f.st.Mailbox(context.Background(), "alice@example.com")
	if err != nil || mb.New != 3 || mb.Old != 1 || mb.UrgentNew != 1 {
		t.Errorf("stored %+v, %v", mb, err)
	}
	f.must(200, "GET", "/api/v1/presence/alice@example.com/mwi", "", &m)
	if m.New != 3 || m.Old != 1 || m.Updated == nil {
		t.Errorf("get = %+v", m)
	}
	for _, c := range []struct{ body, field string }{
		{`{"new":1,"urgent_new":2}`, "urgent_new"},
		{`{"old":-1}`, "urgent_old"},
		{`{"new":"3"}`, "new"},
		{`{"aor":"bob@example.com"}`, "aor"},
	} {
		code, body, _ := f.do(f.token, "PUT", "/api/v1/presence/alice@example.com/mwi", c.body)
		if code != 400 || errorOf(t, body).Field != c.field {
			t.Errorf("%s = %d %s, want 400 naming %s", c.body, code, body, c.field)
		}
	}
	f.api.env.Presence = nil
	f.must(501, "GET", "/api/v1/presence/alice@example.com", "", nil)
}

func TestAPIStats(t *testing.T) {
	f := newFixture(t, Config{})
	var s map[string]any
	f.must(200, "GET", "/api/v1/stats", "", &s)
	if s["version"] != "test" {
		t.Errorf("stats = %v", s)
	}
	// The requests so far are counted by route and code.
	if n := testutil.ToFloat64(f.api.requests.WithLabelValues("GET /api/v1/stats", "200")); n != 1 {
		t.Errorf("requests_total{stats,200} = %v", n)
	}
}

// TestAPIBusy: a request over max_in_flight gets 503 at once rather than
// waiting (the API never queues work behind SIP's).
func TestAPIBusy(t *testing.T) {
	f := newFixture(t, Config{MaxInFlight: 1})
	f.api.slot <- struct{}{} // one request in flight
	code, _, h := f.do(f.token, "GET", "/api/v1/stats", "")
	if code != 503 || h.Get("Retry-After") == "" {
		t.Errorf("over max_in_flight: %d, Retry-After %q", code, h.Get("Retry-After"))
	}
	<-f.api.slot
	if code, _, _ := f.do(f.token, "GET", "/api/v1/stats", ""); code != 200 {
		t.Errorf("after: %d", code)
	}
	if testutil.ToFloat64(f.api.busy) != 1 {
		t.Error("busy_total not counted")
	}
}

func TestTokenFormat(t *testing.T) {
	a, ha, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, hb, _ := NewToken()
	if len(a) != tokenLen || a == b || ha == hb || ha != HashToken(a) || len(ha) != 64 || strings.ContainsAny(a, "+/=") {
		t.Errorf("tokens %q %q hashes %q %q", a, b, ha, hb)
	}
}

func TestAPIConfigValidate(t *testing.T) {
	if err := (Config{MaxBody: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "max_body") {
		t.Errorf("negative max_body: %v", err)
	}
	if _, err := New(Config{}, Env{}); err == nil {
		t.Error("New without a store")
	}
}

// TestAPIReload: POST /api/v1/reload applies the configuration again
// through Env.Reload and answers its report; a refused configuration is
// 400 with the reason; a read-only token may not; a server without a
// configuration source answers 501.
func TestAPIReload(t *testing.T) {
	f := newFixture(t, Config{})
	f.must(501, "POST", "/api/v1/reload", "", nil)

	calls := 0
	var refuse error
	a, err := New(Config{}, Env{Store: f.st, Registrar: f.reg, Reload: func() (any, error) {
		calls++
		if refuse != nil {
			return nil, refuse
		}
		return map[string]any{"applied": []map[string]string{{"key": "log_level", "old": "info", "new": "debug"}}}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(a)
	t.Cleanup(f.srv.Close)

	var rep struct {
		Applied []struct{ Key, Old, New string } `json:"applied"`
	}
	f.must(200, "POST", "/api/v1/reload", "", &rep)
	if calls != 1 || len(rep.Applied) != 1 || rep.Applied[0].Key != "log_level" || rep.Applied[0].New != "debug" {
		t.Errorf("calls %d, report %+v", calls, rep)
	}
	refuse = errors.New(`config hlas.yaml: line 3: field lsten not found`)
	code, body, _ := f.do(f.token, "POST", "/api/v1/reload", "")
	if code != 400 || !strings.Contains(errorOf(t, body).Message, "lsten") {
		t.Errorf("refused configuration: %d %s", code, body)
	}
	if code, _, _ := f.do(f.roToken, "POST", "/api/v1/reload", ""); code != 403 {
		t.Errorf("read-only token: %d, want 403", code)
	}
	if calls != 2 {
		t.Errorf("Reload called %d times, want 2 (not for the read-only token)", calls)
	}
}
