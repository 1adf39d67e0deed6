package api

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestConsoleFiles: the console's files are served as embedded, without a
// token, with their types and the headers that keep the page to itself.
func TestConsoleFiles(t *testing.T) {
	f := newFixture(t, Config{})
	cases := []struct{ path, file, ctype string }{
		{"/console/", "index.html", "text/html; charset=utf-8"},
		{"/console/index.html", "index.html", "text/html; charset=utf-8"},
		{"/console/app.js", "app.js", "text/javascript; charset=utf-8"},
		{"/console/style.css", "style.css", "text/css; charset=utf-8"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			want, err := fs.ReadFile(consoleFiles, "console/"+c.file)
			if err != nil || len(want) == 0 {
				t.Fatalf("embedded %s: %v", c.file, err)
			}
			// No token, and a wrong one: the files hold no data, so
			// neither is refused nor counted as a failed login.
			for _, tok := range []string{"", strings.Repeat("x", tokenLen)} {
				code, body, h := f.do(tok, "GET", c.path, "")
				if code != 200 || body != string(want) || h.Get("Content-Type") != c.ctype {
					t.Errorf("token %q: GET %s = %d %q, %d bytes (want %d)", tok, c.path, code, h.Get("Content-Type"), len(body), len(want))
				}
				if h.Get("Content-Security-Policy") != consoleCSP || h.Get("X-Content-Type-Options") != "nosniff" ||
					h.Get("X-Frame-Options") != "DENY" {
					t.Errorf("GET %s: headers %v", c.path, h)
				}
			}
		})
	}
	if n := testutil.ToFloat64(f.api.authFailures); n != 0 || len(f.failed) != 0 {
		t.Errorf("auth failures %v, reported %v", n, f.failed)
	}
	if n := testutil.ToFloat64(f.api.requests.WithLabelValues("GET /console/", "200")); n != float64(2*len(cases)) {
		t.Errorf("requests_total{GET /console/,200} = %v, want %d", n, 2*len(cases))
	}
}

// TestConsoleNotFound: nothing but the console's own files comes out of
// the route, whatever the path.
func TestConsoleNotFound(t *testing.T) {
	f := newFixture(t, Config{})
	for _, p := range []string{"/console/nope.js", "/console/console/app.js", "/console/app.js/", "/console/%2e%2e/api.go"} {
		code, body, _ := f.do("", "GET", p, "")
		if code == 200 {
			t.Errorf("GET %s = 200:\n%.200s", p, body)
		}
	}
	// Dot segments are cleaned by the mux into a redirect, never a file
	// outside console/.
	req := httptest.NewRequest("GET", "/console/../api/v1/stats", nil)
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	if rec.Code == 200 {
		t.Errorf("GET /console/../api/v1/stats without a token = 200: %s", rec.Body)
	}
	if code, _, _ := f.do("", "POST", "/console/", "x"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/ = %d, want 405", code)
	}
	// /console without the slash goes to the page.
	req = httptest.NewRequest("GET", "/console", nil)
	rec = httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	if rec.Code/100 != 3 || rec.Header().Get("Location") != "/console/" {
		t.Errorf("GET /console = %d, Location %q", rec.Code, rec.Header().Get("Location"))
	}
}

// TestConsoleUsesPublicAPI: every API path the script reads is a GET of
// the routes table (so in openapi.json, which the OpenAPI test keeps
// true), answered with the token; and the page loads only its own files.
func TestConsoleUsesPublicAPI(t *testing.T) {
	js, err := fs.ReadFile(consoleFiles, "console/app.js")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Config{})
	calls := regexp.MustCompile(`(?:get\(|API \+ )"(/[^"?]*)`).FindAllStringSubmatch(string(js), -1)
	if len(calls) < 3 {
		t.Fatalf("found %d API calls in app.js: %v", len(calls), calls)
	}
	for _, m := range calls {
		path := "/api/v1" + m[1]
		if path == "/api/v1/events" {
			// The event stream is optional: the script falls back to
			// polling when it is absent.
			continue
		}
		_, pattern := f.api.mux.Handler(httptest.NewRequest("GET", path, nil))
		rt, ok := routeOf(pattern)
		if !ok || rt.open {
			t.Errorf("app.js reads %s: route %q (in the table %v, open %v)", path, pattern, ok, rt.open)
			continue
		}
		if code, body, _ := f.do(f.roToken, "GET", path, ""); code != 200 {
			t.Errorf("GET %s with a read-only token = %d %s", path, code, body)
		}
		if code, _, _ := f.do("", "GET", path, ""); code != 401 {
			t.Errorf("GET %s without a token = %d", path, code)
		}
	}
	html, err := fs.ReadFile(consoleFiles, "console/index.html")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(html), -1)
	if len(refs) != 2 {
		t.Errorf("index.html refers to %v, want app.js and style.css", refs)
	}
	for _, m := range refs {
		if code, _, _ := f.do("", "GET", "/console/"+m[1], ""); code != 200 {
			t.Errorf("index.html refers to %q: GET = %d", m[1], code)
		}
	}
	if strings.Contains(string(html), "<script>") || strings.Contains(string(js), "innerHTML") {
		t.Error("inline script or innerHTML: the CSP forbids the one, and the page writes server data as text only")
	}
}

// TestConsoleHangup: the script's one write, the hang-up, is a route of
// the table; a read-only token is refused it (403, which the page turns
// into its message and disabled buttons), and a full token hangs up the
// call named by its Call-ID percent-encoded as encodeURIComponent does.
func TestConsoleHangup(t *testing.T) {
	js, err := fs.ReadFile(consoleFiles, "console/app.js")
	if err != nil {
		t.Fatal(err)
	}
	writes := regexp.MustCompile(`send\("([A-Z]+)", "(/[^"?]*)"`).FindAllStringSubmatch(string(js), -1)
	if len(writes) != 1 || writes[0][1] != "DELETE" || writes[0][2] != "/calls/" {
		t.Fatalf("app.js writes %v, want the one DELETE /calls/", writes)
	}
	f := newFixture(t, Config{})
	const id = "a b/c@host;x"
	f.calls.calls = []Call{{CallID: id, From: "sip:alice@example.test", To: "sip:bob@example.test", State: "confirmed"}}
	// encodeURIComponent(id): all but A-Z a-z 0-9 - _ . ! ~ * ' ( ).
	path := "/api/v1" + writes[0][2] + "a%20b%2Fc%40host%3Bx"
	_, pattern := f.api.mux.Handler(httptest.NewRequest("DELETE", path, nil))
	if rt, ok := routeOf(pattern); !ok || rt.open || pattern != "DELETE /api/v1/calls/{call_id}" {
		t.Fatalf("DELETE %s: route %q (in the table %v)", path, pattern, ok)
	}
	if code, _, _ := f.do("", "DELETE", path, ""); code != 401 {
		t.Errorf("DELETE %s without a token = %d, want 401", path, code)
	}
	if code, body, _ := f.do(f.roToken, "DELETE", path, ""); code != 403 || !strings.Contains(body, "read-only") {
		t.Errorf("DELETE %s with a read-only token = %d %s, want 403 saying read-only", path, code, body)
	}
	if len(f.calls.List()) != 1 {
		t.Fatal("a refused hang-up ended the call")
	}
	var h HungUp
	f.must(http.StatusAccepted, "DELETE", path, "", &h)
	if h.CallID != id || h.Action != HangupBye {
		t.Errorf("hang-up answered %+v", h)
	}
	if code, _, _ := f.do(f.token, "DELETE", path, ""); code != 404 {
		t.Errorf("second hang-up = %d, want 404", code)
	}
}
