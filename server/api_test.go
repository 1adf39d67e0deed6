package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/store"
)

// apiCall sends an API request with token and decodes a JSON answer into v.
func apiCall(t *testing.T, base, token, method, path string, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if v != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return res.StatusCode
}

// A phone registers over UDP; the API shows its binding and removes it,
// and the registrar no longer has it.
func TestAPIServerRegistrations(t *testing.T) {
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		Auth: auth.Config{OpenDomains: []string{"example.test"}}, API: APIConfig{Listen: "127.0.0.1:0"}})
	if srv.APIAddr() == "" {
		t.Fatal("no API listener")
	}
	base := "http://" + srv.APIAddr()
	token, hash, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.store.AddAPIToken(context.Background(), store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	if code := apiCall(t, base, "", "GET", "/healthz", nil); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	if code := apiCall(t, base, "", "GET", "/api/v1/registrations", nil); code != 401 {
		t.Fatalf("without a token = %d", code)
	}

	to := srv.addr(t, "UDP", false)
	msg := "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-api-1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=f\r\nTo: <sip:alice@example.test>\r\nCall-ID: api-reg-1\r\n" +
		"CSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:5099>;expires=600\r\nUser-Agent: api-test\r\nContent-Length: 0\r\n\r\n"
	if res := udpExchange(t, to, msg, 5*time.Second); res == nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", res)
	}
	var l api.List[api.Registration]
	if code := apiCall(t, base, token, "GET", "/api/v1/registrations?aor=alice@example.test", &l); code != 200 {
		t.Fatalf("GET registrations = %d", code)
	}
	if len(l.Items) != 1 || l.Items[0].Contact != "<sip:alice@127.0.0.1:5099>" || l.Items[0].UserAgent != "api-test" || l.Items[0].Transport != "UDP" {
		t.Fatalf("registrations = %+v", l.Items)
	}
	id := l.Items[0].ID
	if code := apiCall(t, base, token, "DELETE", "/api/v1/registrations/alice@example.test/"+id, nil); code != 204 {
		t.Fatalf("DELETE = %d", code)
	}
	if bs := srv.registrar.Lookup("alice@example.test"); len(bs) != 0 {
		t.Errorf("still registered: %+v", bs)
	}
	l = api.List[api.Registration]{}
	if code := apiCall(t, base, token, "GET", "/api/v1/registrations?aor=alice@example.test", &l); code != 200 || len(l.Items) != 0 {
		t.Errorf("after DELETE: %d %+v", code, l.Items)
	}

	// Presence reads the compositor: nothing published, a closed document.
	var p api.Presentity
	if code := apiCall(t, base, token, "GET", "/api/v1/presence/alice@example.test", &p); code != 200 ||
		!strings.Contains(p.Document, "sip:alice@example.test") || !strings.Contains(p.Document, "closed") || len(p.Publications) != 0 {
		t.Errorf("presence = %d %+v", code, p)
	}

	// Stats carry the server's metrics, the API's own among them.
	var st struct {
		Version string             `json:"version"`
		Metrics map[string]float64 `json:"metrics"`
	}
	if code := apiCall(t, base, token, "GET", "/api/v1/stats", &st); code != 200 || st.Version != Version {
		t.Fatalf("stats = %d %+v", code, st.Version)
	}
	if n := st.Metrics[`hlas_api_requests_total{code="401",route="GET /api/v1/registrations"}`]; n != 1 {
		t.Errorf("stats: the 401 not counted (%v); metrics: %v", n, keys(st.Metrics, "hlas_api"))
	}
}

func keys(m map[string]float64, prefix string) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// Wrong tokens feed the password-guessing detector: enough of them ban
// the source, which then gets 403 even with a good token.
func TestAPIServerAuthFailuresBan(t *testing.T) {
	cfg := Config{Listen: []string{"udp:127.0.0.1:0"}, API: APIConfig{Enabled: true, Listen: "127.0.0.2:0"}}
	cfg.Security.Detect.AuthFailures = 3
	cfg.Security.Trusted = []string{"192.0.2.0/24"} // not loopback, trusted by default
	srv := startServer(t, cfg)
	base := "http://" + srv.APIAddr()
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(context.Background(), store.APIToken{Name: "test", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	wrong, _, _ := api.NewToken()
	for i := range 3 {
		if code := apiCall(t, base, wrong, "GET", "/api/v1/stats", nil); code != 401 {
			t.Fatalf("wrong token %d = %d", i, code)
		}
	}
	if code := apiCall(t, base, token, "GET", "/api/v1/stats", nil); code != 403 {
		t.Errorf("good token after 3 failures = %d, want 403 (banned)", code)
	}
}

func TestAPIConfig(t *testing.T) {
	if (APIConfig{}).On() {
		t.Error("the API is on by default")
	}
	if c := (APIConfig{Enabled: true}); !c.On() || c.Addr() != DefaultAPIListen || !strings.HasPrefix(c.Addr(), "127.0.0.1:") {
		t.Errorf("enabled without an address: on=%v addr %q", c.On(), c.Addr())
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{API: APIConfig{Listen: "nowhere"}}, "api.listen"},
		{Config{API: APIConfig{Listen: "127.0.0.1:0", TLS: true}}, "api.tls"},
		{Config{API: APIConfig{Enabled: true, Config: api.Config{MaxBody: -1}}}, "api.max_body"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg.API, err, c.want)
		}
	}
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte("api: { listen: \"127.0.0.1:8088\", max_in_flight: 4, timeout: 5s }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := cfg.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if cfg.API.Listen != "127.0.0.1:8088" || cfg.API.MaxInFlight != 4 || cfg.API.Timeout != 5*time.Second {
		t.Errorf("from YAML: %+v", cfg.API)
	}
}

// api.tls serves HTTPS with the server's certificate.
func TestAPIServerTLS(t *testing.T) {
	cert, key := writeCert(t, t.TempDir())
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, TLSCert: cert, TLSKey: key,
		API: APIConfig{Listen: "127.0.0.1:0", TLS: true}})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	res, err := c.Get("https://" + srv.APIAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil {
		t.Errorf("https healthz = %d, tls %v", res.StatusCode, res.TLS != nil)
	}
	if res, err := http.Get("http://" + srv.APIAddr() + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS listener")
		}
	}
}

// TestAPIServerReload: POST /api/v1/reload applies the configuration the
// server's loader gives (as SIGHUP does) and answers the report; without
// a loader it is 501.
func TestAPIServerReload(t *testing.T) {
	cfg := Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		API: APIConfig{Listen: "127.0.0.1:0"}}
	srv := startServer(t, cfg)
	base := "http://" + srv.APIAddr()
	token, hash, _ := api.NewToken()
	if err := srv.store.AddAPIToken(context.Background(), store.APIToken{Name: "ops", Hash: hash}); err != nil {
		t.Fatal(err)
	}
	if code := apiCall(t, base, token, "POST", "/api/v1/reload", nil); code != 501 {
		t.Fatalf("without a configuration source = %d, want 501", code)
	}
	srv.SetConfigLoader(func() (Config, error) {
		c := cfg
		c.Routing.Locations = map[string][]string{"bob@example.test": {"sip:bob@192.0.2.7:5060"}}
		return c, nil
	})
	var rep ReloadReport
	if code := apiCall(t, base, token, "POST", "/api/v1/reload", &rep); code != 200 {
		t.Fatalf("reload = %d", code)
	}
	applied := false
	for _, c := range rep.Applied {
		applied = applied || c.Key == "routing.locations"
	}
	if !applied {
		t.Errorf("report %+v does not list routing.locations as applied", rep)
	}
	if got := srv.proxy.Config().Locations["bob@example.test"]; len(got) != 1 {
		t.Errorf("the proxy routes bob to %v after the reload", got)
	}
}
