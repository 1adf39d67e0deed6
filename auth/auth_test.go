package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/store"
)

// memUsers is an in-memory subscriber store that reports changes, as
// store.Users does, and counts its reads.
type memUsers struct {
	mu       sync.Mutex
	users    map[string]store.User
	err      error
	version  int64
	reads    int // User calls
	versions int // UsersVersion calls
	// afterRead, when set, runs after User has read the map and before
	// it returns, without the lock: a lookup caught in flight.
	afterRead func()
	// inVersion, when set, runs inside UsersVersion, without the lock.
	inVersion func()
}

func newMemUsers(us ...store.User) *memUsers {
	m := &memUsers{users: map[string]store.User{}}
	for _, u := range us {
		m.users[u.AOR()] = u
	}
	return m
}

func (m *memUsers) User(_ context.Context, username, domain string) (store.User, error) {
	m.mu.Lock()
	m.reads++
	u, ok := m.users[username+"@"+domain]
	err, after := m.err, m.afterRead
	m.mu.Unlock()
	if after != nil {
		after()
	}
	if err != nil {
		return store.User{}, err
	}
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}

func (m *memUsers) UsersVersion(ctx context.Context) (int64, error) {
	m.mu.Lock()
	in := m.inVersion
	m.mu.Unlock()
	if in != nil {
		in()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.versions++
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return m.version, m.err
}

// put adds or replaces a subscriber, as `hlas user add/passwd` would.
func (m *memUsers) put(u store.User) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[u.AOR()] = u
	m.version++
}

// del removes a subscriber, as `hlas user del` would.
func (m *memUsers) del(aor string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.users, aor)
	m.version++
}

// setErr makes every call fail with err (nil: work again).
func (m *memUsers) setErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// pauseOnce makes the next call of the hook *h (&m.afterRead or
// &m.inVersion) close entered and wait until release is closed; the calls
// after it pass.
func (m *memUsers) pauseOnce(h *func()) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	m.mu.Lock()
	defer m.mu.Unlock()
	*h = func() {
		m.mu.Lock()
		*h = nil
		m.mu.Unlock()
		close(entered)
		<-release
	}
	return entered, release
}

// counts returns how many times User and UsersVersion were called.
func (m *memUsers) counts() (reads, versions int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads, m.versions
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// recorder is a recording Responder.
type recorder struct{ res []*sip.Response }

func (r *recorder) Respond(res *sip.Response) error {
	r.res = append(r.res, res)
	return nil
}

func (r *recorder) last(t *testing.T) *sip.Response {
	t.Helper()
	if len(r.res) == 0 {
		t.Fatal("no response sent")
	}
	return r.res[len(r.res)-1]
}

var secret = []byte("0123456789abcdef0123456789abcdef")

type fixture struct {
	a     *Authenticator
	users *memUsers
	clock *clock
	reg   *prometheus.Registry
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	f := &fixture{
		users: newMemUsers(NewUser("alice", "example.test", "secret"), NewUser("bob", "example.test", "hunter2")),
		clock: &clock{now: time.Unix(1_800_000_000, 0)},
		reg:   prometheus.NewRegistry(),
	}
	cfg := Config{OpenDomains: []string{"lab.test"}}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg, Env{Secret: secret, Users: f.users, Now: f.clock.Now, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	f.a = a
	return f
}

// register builds a REGISTER for aor to the registrar of its domain.
func register(t testing.TB, aor string, extra ...string) *sip.Request {
	t.Helper()
	_, domain, _ := strings.Cut(aor, "@")
	text := "REGISTER sip:" + domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + aor + ">;tag=f1\r\n" +
		"To: <sip:" + aor + ">\r\n" +
		"Call-ID: c1@192.0.2.1\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: <sip:u@192.0.2.1:5060>\r\n" +
		"User-Agent: Linphone/5.1.65 (belle-sip/5.1.64)\r\n" +
		strings.Join(extra, "") +
		"Content-Length: 0\r\n\r\n"
	m, err := sip.ParseString(text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return m.(*sip.Request)
}

// answer computes credentials for the challenge header of res whose
// algorithm is alg, as a client would.
func answer(t testing.TB, res *sip.Response, kind Kind, alg, user, password string, req *sip.Request, nc uint32) string {
	t.Helper()
	for _, v := range headerRows(res, kind.ChallengeHeader()) {
		ch, err := digest.ParseChallenge(v)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.EqualFold(ch.Algorithm, alg) {
			continue
		}
		cr, err := ch.Authorize(digest.Answer{Method: req.Method, URI: req.URI.String(), Username: user,
			Password: password, NC: nc, CNonce: "0a4f113b"})
		if err != nil {
			t.Fatal(err)
		}
		return cr.String()
	}
	t.Fatalf("no %s challenge with algorithm %s in\n%s", kind.ChallengeHeader(), alg, res)
	return ""
}

func headerRows(res *sip.Response, name string) []string {
	var out []string
	for _, f := range res.Fields {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// challenge runs a request without credentials and returns the 401/407.
func (f *fixture) challenge(t *testing.T, req *sip.Request, kind Kind, user, domain string) *sip.Response {
	t.Helper()
	var rec recorder
	if _, ok := f.a.Authenticate(context.Background(), &rec, req, kind, user, domain); ok {
		t.Fatal("a request without credentials was accepted")
	}
	res := rec.last(t)
	if res.StatusCode != kind.Status() {
		t.Fatalf("got %d, want %d", res.StatusCode, kind.Status())
	}
	return res
}

func TestChallengeFormat(t *testing.T) {
	f := newFixture(t, nil)
	req := register(t, "alice@example.test")
	res := f.challenge(t, req, Origin, "alice", "example.test")
	rows := headerRows(res, "WWW-Authenticate")
	if len(rows) != 2 {
		t.Fatalf("RFC8760 2.4: want two challenges, got %q", rows)
	}
	var nonces []string
	for i, want := range []string{"SHA-256", "MD5"} {
		ch, err := digest.ParseChallenge(rows[i])
		if err != nil {
			t.Fatal(err)
		}
		if ch.Algorithm != want || ch.Realm != "example.test" || len(ch.QOP) != 1 || ch.QOP[0] != "auth" || ch.Stale {
			t.Errorf("challenge %d = %q; want algorithm %s, realm example.test, qop auth", i, rows[i], want)
		}
		if len(ch.Nonce) != nonceLen {
			t.Errorf("nonce %q: length %d, want %d", ch.Nonce, len(ch.Nonce), nonceLen)
		}
		nonces = append(nonces, ch.Nonce)
	}
	if nonces[0] != nonces[1] {
		t.Errorf("one challenge, one nonce: %q", nonces)
	}
	res2 := f.challenge(t, req, Origin, "alice", "example.test")
	if ch, _ := digest.ParseChallenge(headerRows(res2, "WWW-Authenticate")[0]); ch.Nonce == nonces[0] {
		t.Error("two challenges got the same nonce")
	}
	if res.To.Tag() == "" {
		t.Error("401 without a To tag (RFC 3261 8.2.6.2)")
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	type step func(t *testing.T, f *fixture) Result
	// fresh answers a fresh challenge for alice with the given algorithm,
	// password and user name.
	fresh := func(alg, user, password string, mutate func(string) string) step {
		return func(t *testing.T, f *fixture) Result {
			req := register(t, "alice@example.test")
			res := f.challenge(t, req, Origin, "alice", "example.test")
			h := answer(t, res, Origin, alg, user, password, req, 1)
			if mutate != nil {
				h = mutate(h)
			}
			return f.a.Check(ctx, register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Origin, "alice", "example.test")
		}
	}
	tests := []struct {
		name    string
		run     step
		outcome Outcome
		stale   bool
		reason  string
	}{
		{"RFC7616 3.4 SHA-256 answer", fresh("SHA-256", "alice", "secret", nil), Accepted, false, ""},
		{"RFC8760 2.4 MD5 answer", fresh("MD5", "alice", "secret", nil), Accepted, false, ""},
		{"RFC3261 22.2 no credentials", func(t *testing.T, f *fixture) Result {
			return f.a.Check(ctx, register(t, "alice@example.test"), Origin, "alice", "example.test")
		}, Challenged, false, reasonNoCredentials},
		{"RFC3261 22.4 wrong password gets a new challenge", fresh("SHA-256", "alice", "wrong", nil), Challenged, false, reasonWrongPassword},
		{"unknown user gets the same challenge", fresh("MD5", "mallory", "x", func(h string) string { return h }), Challenged, false, reasonUnknownUser},
		{"RFC3261 10.3 step 4 another user's AOR: 403", fresh("SHA-256", "bob", "hunter2", nil), Forbidden, false, ""},
		{"RFC3261 10.3 step 4 another user with a wrong password: challenge, not 403", fresh("SHA-256", "bob", "wrong", nil), Challenged, false, reasonWrongPassword},
		{"RFC7616 3.3 expired nonce, good password: stale=true", func(t *testing.T, f *fixture) Result {
			req := register(t, "alice@example.test")
			res := f.challenge(t, req, Origin, "alice", "example.test")
			h := answer(t, res, Origin, "SHA-256", "alice", "secret", req, 1)
			f.clock.Add(DefaultNonceTTL + time.Second)
			return f.a.Check(ctx, register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Origin, "alice", "example.test")
		}, Challenged, true, reasonStale},
		{"RFC7616 3.3 expired nonce, wrong password: stale=false", func(t *testing.T, f *fixture) Result {
			req := register(t, "alice@example.test")
			res := f.challenge(t, req, Origin, "alice", "example.test")
			h := answer(t, res, Origin, "SHA-256", "alice", "wrong", req, 1)
			f.clock.Add(DefaultNonceTTL + time.Second)
			return f.a.Check(ctx, register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Origin, "alice", "example.test")
		}, Challenged, false, reasonWrongPassword},
		{"RFC7616 5.4 nonce signed with another secret: stale", func(t *testing.T, f *fixture) Result {
			other, _ := New(Config{}, Env{Secret: []byte("another secret, 16 bytes or more"), Users: f.users, Now: f.clock.Now})
			req := register(t, "alice@example.test")
			var rec recorder
			other.Authenticate(ctx, &rec, req, Origin, "alice", "example.test")
			h := answer(t, rec.last(t), Origin, "SHA-256", "alice", "secret", req, 1)
			return f.a.Check(ctx, register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Origin, "alice", "example.test")
		}, Challenged, true, reasonStale},
		{"RFC7616 3.4 nonce-count replayed: stale", func(t *testing.T, f *fixture) Result {
			req := register(t, "alice@example.test")
			res := f.challenge(t, req, Origin, "alice", "example.test")
			h := answer(t, res, Origin, "SHA-256", "alice", "secret", req, 1)
			signed := register(t, "alice@example.test", "Authorization: "+h+"\r\n")
			if r := f.a.Check(ctx, signed, Origin, "alice", "example.test"); r.Outcome != Accepted {
				t.Fatalf("first use: %+v", r)
			}
			return f.a.Check(ctx, signed, Origin, "alice", "example.test")
		}, Challenged, true, reasonReplay},
		{"RFC7616 3.4 nonce reused with a higher nonce-count", func(t *testing.T, f *fixture) Result {
			req := register(t, "alice@example.test")
			res := f.challenge(t, req, Origin, "alice", "example.test")
			for nc := uint32(1); nc <= 3; nc++ {
				h := answer(t, res, Origin, "MD5", "alice", "secret", req, nc)
				if r := f.a.Check(ctx, register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Origin, "alice", "example.test"); r.Outcome != Accepted {
					t.Fatalf("nc %d: %+v", nc, r)
				}
			}
			h := answer(t, res, Origin, "MD5", "alice", "secret", req, 2)
			return f.a.Check(ctx, register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Origin, "alice", "example.test")
		}, Challenged, true, reasonReplay},
		{"RFC7616 3.4 malformed Authorization: 400", func(t *testing.T, f *fixture) Result {
			return f.a.Check(ctx, register(t, "alice@example.test", "Authorization: Digest username=\"alice, realm=\r\n"), Origin, "alice", "example.test")
		}, Malformed, false, ""},
		{"RFC7616 3.4 credentials without a nonce: 400", fresh("SHA-256", "alice", "secret", func(h string) string {
			i := strings.Index(h, "nonce=")
			j := i + strings.Index(h[i:], ", ")
			return h[:i] + h[j+2:]
		}), Malformed, false, ""},
		{"RFC7616 3.4 qop without cnonce: 400", fresh("SHA-256", "alice", "secret", func(h string) string {
			return strings.Replace(h, `cnonce="0a4f113b"`, `opaque="x"`, 1)
		}), Malformed, false, ""},
		{"RFC7616 3.4.6 a digest uri altered after signing no longer verifies", fresh("SHA-256", "alice", "secret", func(h string) string {
			return strings.Replace(h, `uri="sip:example.test"`, `uri="sip:elsewhere.test"`, 1)
		}), Challenged, false, reasonWrongPassword},
		{"RFC7616 3.4 credentials without a uri: 400", fresh("SHA-256", "alice", "secret", func(h string) string {
			return strings.Replace(h, `uri="sip:example.test"`, `uri=""`, 1)
		}), Malformed, false, ""},
		{"RFC2069 answer without qop: challenged", fresh("MD5", "alice", "secret", func(h string) string {
			h = strings.Replace(h, ", qop=auth", "", 1)
			return strings.Replace(h, ", nc=00000001", "", 1)
		}), Challenged, false, reasonUnsupported},
		{"RFC7616 3.3 algorithm not offered: challenged", fresh("MD5", "alice", "secret", func(h string) string {
			return strings.Replace(h, "algorithm=MD5", "algorithm=SHA-512-256", 1)
		}), Challenged, false, reasonUnsupported},
		{"RFC4475 3.3.7 unknown scheme: treated as absent", func(t *testing.T, f *fixture) Result {
			return f.a.Check(ctx, register(t, "alice@example.test", "Authorization: NoOneKnowsThisScheme opaque-data=here\r\n"), Origin, "alice", "example.test")
		}, Challenged, false, reasonNoCredentials},
		{"RFC3261 22.3 credentials for another realm are ignored", fresh("SHA-256", "alice", "secret", func(h string) string {
			return strings.Replace(h, `realm="example.test"`, `realm="other.test"`, 1)
		}), Challenged, false, reasonNoCredentials},
		{"open domain needs no credentials", func(t *testing.T, f *fixture) Result {
			return f.a.Check(ctx, register(t, "carol@lab.test"), Origin, "carol", "LAB.test")
		}, Accepted, false, ""},
		{"store failure: 500", func(t *testing.T, f *fixture) Result {
			req := register(t, "alice@example.test")
			res := f.challenge(t, req, Origin, "alice", "example.test")
			h := answer(t, res, Origin, "SHA-256", "alice", "secret", req, 1)
			f.users.setErr(errors.New("disk on fire"))
			return f.a.Check(ctx, register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Origin, "alice", "example.test")
		}, Failed, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			r := tt.run(t, f)
			if r.Outcome != tt.outcome || r.Stale != tt.stale || (tt.reason != "" && r.Reason != tt.reason) {
				t.Fatalf("got %+v; want outcome %d stale %v reason %q", r, tt.outcome, tt.stale, tt.reason)
			}
			if r.Outcome == Accepted && r.Identity.AOR() != "alice@example.test" && r.Identity.AOR() != "carol@lab.test" {
				t.Fatalf("identity %+v", r.Identity)
			}
		})
	}
}

// TestAuthenticateResponses checks what goes on the wire for each outcome.
func TestAuthenticateResponses(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	send := func(req *sip.Request, kind Kind) (*sip.Response, Identity, bool) {
		var rec recorder
		id, ok := f.a.Authenticate(ctx, &rec, req, kind, "alice", "example.test")
		if ok {
			if len(rec.res) != 0 {
				t.Fatal("accepted and answered")
			}
			return nil, id, true
		}
		return rec.last(t), id, false
	}
	t.Run("RFC3261 22.3 proxy: 407 with Proxy-Authenticate", func(t *testing.T) {
		req := register(t, "alice@example.test")
		res, _, _ := send(req, Proxy)
		if res.StatusCode != 407 || len(headerRows(res, "Proxy-Authenticate")) != 2 || len(headerRows(res, "WWW-Authenticate")) != 0 {
			t.Fatalf("got\n%s", res)
		}
		h := answer(t, res, Proxy, "SHA-256", "alice", "secret", req, 1)
		// Credentials in the wrong header do not count.
		if res, _, ok := send(register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Proxy); ok || res.StatusCode != 407 {
			t.Fatal("Authorization accepted where Proxy-Authorization was asked for")
		}
		res, id, ok := send(register(t, "alice@example.test", "Proxy-Authorization: "+h+"\r\n"), Proxy)
		if !ok || !id.Authenticated || id.AOR() != "alice@example.test" || id.Algorithm != digest.SHA256 {
			t.Fatalf("got %v %+v", res, id)
		}
	})
	t.Run("RFC7616 3.3 stale=true on the wire", func(t *testing.T) {
		req := register(t, "alice@example.test")
		res, _, _ := send(req, Origin)
		h := answer(t, res, Origin, "MD5", "alice", "secret", req, 1)
		f.clock.Add(time.Hour)
		res, _, _ = send(register(t, "alice@example.test", "Authorization: "+h+"\r\n"), Origin)
		for _, v := range headerRows(res, "WWW-Authenticate") {
			if ch, _ := digest.ParseChallenge(v); !ch.Stale {
				t.Errorf("challenge without stale=true: %s", v)
			}
		}
	})
	t.Run("400 carries a Warning", func(t *testing.T) {
		res, _, _ := send(register(t, "alice@example.test", "Authorization: Digest ,,,=\r\n"), Origin)
		if res.StatusCode != 400 || !strings.Contains(res.Get("Warning"), "Authorization") {
			t.Fatalf("got\n%s", res)
		}
	})
	if got := testutil.ToFloat64(f.a.met.results.WithLabelValues("accepted")); got != 1 {
		t.Errorf("results{accepted} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(f.a.met.challenges.WithLabelValues(reasonStale)); got != 1 {
		t.Errorf("challenges{stale_nonce} = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(f.reg, "hlas_auth_nonces_tracked"); err != nil || n != 1 {
		t.Errorf("nonces_tracked gauge: %d, %v", n, err)
	}
}

// TestRFC7616WorkedExample checks the server side against RFC 7616
// §3.9.1: the example's responses verify against hashes stored the way
// `hlas user add` stores them. The example's nonce is not one of ours, so
// the verdict is the stale challenge a good password with a foreign nonce
// gets (a wrong password would get stale=false).
func TestRFC7616WorkedExample(t *testing.T) {
	users := newMemUsers(NewUser("Mufasa", "http-auth@example.org", "Circle of Life"))
	a, err := New(Config{}, Env{Secret: secret, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ alg, response string }{
		{"MD5", "8ca523f5e9506fed4657c9700eebdbec"},
		{"SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	} {
		t.Run("RFC7616 3.9.1 "+tc.alg, func(t *testing.T) {
			c := &digest.Credentials{
				Scheme: "Digest", Username: "Mufasa", Realm: "http-auth@example.org", URI: "/dir/index.html",
				Algorithm: tc.alg, Nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", NC: 1,
				CNonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", QOP: "auth", Response: tc.response,
			}
			r := a.verify(context.Background(), c, "GET", nil, "Mufasa", "http-auth@example.org")
			if r.Outcome != Challenged || !r.Stale {
				t.Fatalf("got %+v, want the stale challenge of a good password", r)
			}
			c.Response = strings.Replace(c.Response, "8", "9", 1)
			if r := a.verify(context.Background(), c, "GET", nil, "Mufasa", "http-auth@example.org"); r.Stale || r.Reason != reasonWrongPassword {
				t.Fatalf("altered response: %+v, want a wrong password", r)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	users := newMemUsers()
	for name, tc := range map[string]struct {
		cfg Config
		env Env
	}{
		"short secret":              {Config{}, Env{Secret: []byte("short"), Users: users}},
		"no store":                  {Config{}, Env{Secret: secret}},
		"sess algorithm":            {Config{Algorithms: []string{"MD5-sess"}}, Env{Secret: secret, Users: users}},
		"unknown algorithm":         {Config{Algorithms: []string{"SHA-1"}}, Env{Secret: secret, Users: users}},
		"bad open domain":           {Config{OpenDomains: []string{"a b"}}, Env{Secret: secret, Users: users}},
		"negative user_cache_check": {Config{UserCacheCheck: -time.Second}, Env{Secret: secret, Users: users}},
	} {
		if _, err := New(tc.cfg, tc.env); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestMD5OnlyUserAgents: clients known to break on a challenge they do not
// understand get the MD5 challenge alone; everybody else both.
func TestMD5OnlyUserAgents(t *testing.T) {
	f := newFixture(t, nil)
	noUA := func(t *testing.T) *sip.Request {
		req := register(t, "alice@example.test")
		req.Del("User-Agent")
		return req
	}
	for _, tc := range []struct {
		name string
		req  func(t *testing.T) *sip.Request
		n    int
	}{
		{"a modern client gets SHA-256 and MD5", func(t *testing.T) *sip.Request { return register(t, "alice@example.test") }, 2},
		{"sipsak gets MD5 alone", func(t *testing.T) *sip.Request {
			req := register(t, "alice@example.test")
			req.Set("User-Agent", "sipsak 0.9.8.1")
			return req
		}, 1},
		{"baresip 1.0 gets MD5 alone", func(t *testing.T) *sip.Request {
			req := register(t, "alice@example.test")
			req.Set("User-Agent", "baresip v1.0.0 (x86_64/linux)")
			return req
		}, 1},
		{"no User-Agent (SIPp scenarios) gets MD5 alone", noUA, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.challenge(t, tc.req(t), Origin, "alice", "example.test")
			rows := headerRows(res, "WWW-Authenticate")
			if len(rows) != tc.n || !strings.Contains(rows[len(rows)-1], "algorithm=MD5") {
				t.Fatalf("challenges %q", rows)
			}
		})
	}
	g := newFixture(t, func(c *Config) { c.MD5OnlyUserAgents = []string{} })
	if rows := headerRows(g.challenge(t, noUA(t), Origin, "alice", "example.test"), "WWW-Authenticate"); len(rows) != 2 {
		t.Fatalf("md5_only_user_agents [] still narrows: %q", rows)
	}
}

// TestContainsLower: the User-Agent match ignores case as
// strings.Contains(strings.ToLower(ua), l) does, with or without
// non-ASCII text.
func TestContainsLower(t *testing.T) {
	for _, tc := range []struct {
		s, lower string
		want     bool
	}{
		{"SIPsak 0.9.8.1", "sipsak", true},
		{"BareSIP V1.0.0 (x86_64/linux)", "baresip v1.", true},
		{"baresip v2.0.0", "baresip v1.", false},
		{"linphone/5.1 sipp", "sipp", true},
		{"sip", "sipp", false},
		{"", "sipp", false},
		{"Zoiper", "", true},
		{"Téléphone SIPP", "sipp", true},
		{"Téléphone SIPsak", "sipsak", true},
		{"Téléphone", "sipp", false},
	} {
		if got := containsLower(tc.s, tc.lower); got != tc.want || got != strings.Contains(strings.ToLower(tc.s), tc.lower) {
			t.Errorf("containsLower(%q, %q) = %v, want %v", tc.s, tc.lower, got, tc.want)
		}
	}
}

func TestAlgorithmsConfig(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Algorithms = []string{"md5"} })
	res := f.challenge(t, register(t, "alice@example.test"), Origin, "alice", "example.test")
	if rows := headerRows(res, "WWW-Authenticate"); len(rows) != 1 || !strings.Contains(rows[0], "algorithm=MD5") {
		t.Fatalf("challenges %q, want MD5 only", rows)
	}
	g := newFixture(t, func(c *Config) { c.OpenDomains = []string{"*"} })
	if r := g.a.Check(context.Background(), register(t, "alice@example.test"), Origin, "alice", "example.test"); r.Outcome != Accepted || r.Identity.Authenticated {
		t.Fatalf("open_domains [*]: %+v", r)
	}
}

func TestNonce(t *testing.T) {
	n := nonces{secret: secret, ttl: time.Minute, skew: time.Second}
	now := time.Unix(1_800_000_000, 0)
	nonce := n.mint("example.test", now)
	if _, st := n.check(nonce, "example.test", now.Add(59*time.Second)); st != nonceFresh {
		t.Errorf("fresh nonce: %d", st)
	}
	if _, st := n.check(nonce, "example.test", now.Add(61*time.Second)); st != nonceStale {
		t.Errorf("expired nonce: %d", st)
	}
	if _, st := n.check(nonce, "example.test", now.Add(-2*time.Second)); st != nonceStale {
		t.Errorf("nonce from the future: %d", st)
	}
	if _, st := n.check(nonce, "other.test", now); st != nonceInvalid {
		t.Errorf("nonce of another realm: %d", st)
	}
	b := []byte(nonce)
	b[3] ^= 1
	if _, st := n.check(string(b), "example.test", now); st != nonceInvalid {
		t.Errorf("tampered nonce: %d", st)
	}
	for _, bad := range []string{"", "x", strings.Repeat("!", nonceLen)} {
		if _, st := n.check(bad, "example.test", now); st != nonceInvalid {
			t.Errorf("check(%q) = %d", bad, st)
		}
	}
}

func TestNCTableBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tab := newNCTable(3, time.Minute)
	issued := func(i int) time.Time { return now.Add(time.Duration(i) * time.Millisecond) }
	for i := range 5 {
		if r := tab.use(string(rune('a'+i)), issued(i), 1, now); r != ncOK {
			t.Fatalf("nonce %d: %d", i, r)
		}
	}
	if tab.len() != 3 {
		t.Fatalf("table holds %d, want the bound 3", tab.len())
	}
	// a and b were evicted: they are forgotten (stale), never replayable.
	if r := tab.use("a", issued(0), 2, now); r != ncForgotten {
		t.Errorf("evicted nonce: %d, want forgotten", r)
	}
	if r := tab.use("e", issued(4), 1, now); r != ncReplay {
		t.Errorf("replay of a tracked nonce: %d", r)
	}
	if r := tab.use("e", issued(4), 2, now); r != ncOK {
		t.Errorf("next nc of a tracked nonce: %d", r)
	}
	// Entries leave with their nonce.
	later := now.Add(2 * time.Minute)
	if r := tab.use("f", later, 1, later); r != ncOK || tab.len() != 1 {
		t.Errorf("after expiry: %d, len %d", r, tab.len())
	}
}

func TestNCTableChurn(t *testing.T) {
	// Many nonces through a small table: the queue is compacted and the
	// table never grows past its bound.
	tab := newNCTable(100, time.Minute)
	now := time.Unix(1_800_000_000, 0)
	for i := range 10000 {
		at := now.Add(time.Duration(i) * 10 * time.Millisecond)
		tab.use(strings.Repeat("n", 1+i%7)+string(rune(i)), at, 1, at)
		if tab.len() > 100 {
			t.Fatalf("len %d", tab.len())
		}
	}
	if len(tab.order)-tab.start > 100 || cap(tab.order) > 10000 {
		t.Errorf("queue holds %d live of %d", len(tab.order)-tab.start, len(tab.order))
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", SecretFile)
	s1, err := LoadOrCreateSecret(path)
	if err != nil || len(s1) != secretLen {
		t.Fatalf("create: %x, %v", s1, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode(), err)
	}
	s2, err := LoadOrCreateSecret(path)
	if err != nil || string(s1) != string(s2) {
		t.Fatalf("reload gave another secret: %v", err)
	}
	if err := os.WriteFile(path, []byte("zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecret(path); err == nil {
		t.Fatal("a corrupt secret file was accepted")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "sub", ".auth.secret-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("identity in an empty context")
	}
	id := Identity{Username: "alice", Domain: "example.test", Authenticated: true}
	if got, ok := FromContext(NewContext(context.Background(), id)); !ok || got != id {
		t.Fatalf("FromContext = %+v, %v", got, ok)
	}
}

// FuzzAuthorization feeds arbitrary Authorization values through the whole
// server-side path (parse, parameter checks, nonce, store, verify): it
// must never panic, and without the secret nothing can be accepted.
func FuzzAuthorization(f *testing.F) {
	f.Add(`Digest username="alice", realm="example.test", nonce="x", uri="sip:example.test", response="00", qop=auth, nc=00000001, cnonce="c", algorithm=MD5`)
	f.Add(`Digest username="alice", realm="example.test", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:example.test", response="00", qop=auth, nc=00000001, cnonce="c"`)
	f.Add(`NoOneKnowsThisScheme opaque-data=here`)
	f.Add(`Digest ,,,`)
	f.Add("Digest\r\n username=\"a\\\"b\"")
	users := newMemUsers(NewUser("alice", "example.test", "secret"))
	a, err := New(Config{}, Env{Secret: secret, Users: users})
	if err != nil {
		f.Fatal(err)
	}
	base, err := sip.ParseString("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" +
		"From: <sip:alice@example.test>;tag=1\r\nTo: <sip:alice@example.test>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value string) {
		req := *base.(*sip.Request)
		req.Fields = append([]sip.Field(nil), req.Fields...)
		req.Add("Authorization", value)
		r := a.Check(context.Background(), &req, Origin, "alice", "example.test")
		if r.Outcome == Accepted {
			t.Fatalf("accepted forged credentials %q", value)
		}
		var rec recorder
		a.Respond(&rec, &req, Origin, "example.test", r)
		if len(rec.res) != 1 {
			t.Fatalf("no answer for %q", value)
		}
	})
}
