package server_test

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/security"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/stir"
	"github.com/hlas-voip/hlas/stir/stirtest"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/ua"
)

// stirPKI is a test STI PKI: a root, a signing certificate with
// TNAuthList served over HTTPS, and the files the configuration names.
type stirPKI struct {
	keyFile, rootsFile, fetchCAFile, x5u string
	keyPEM                               []byte
}

func newSTIRPKI(t *testing.T) stirPKI {
	t.Helper()
	dir := t.TempDir()
	root := stirtest.NewCA(t, "test STI root")
	leaf, key := root.Leaf(t, stirtest.LeafOptions{})
	srv := stirtest.NewX5UServer(t)
	srv.Set("/sti/709J.pem", stirtest.PEMChain(leaf))
	p := stirPKI{
		keyFile: filepath.Join(dir, "key.pem"), rootsFile: filepath.Join(dir, "roots.pem"),
		fetchCAFile: filepath.Join(dir, "fetch-ca.pem"), x5u: srv.URL + "/sti/709J.pem",
		keyPEM: stirtest.KeyPEM(t, key),
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.keyFile, p.keyPEM)
	write(p.rootsFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}))
	write(p.fetchCAFile, srv.CertPEM)
	return p
}

func startSrv(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.DNS = noDNS(t)
	s, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// passport decodes the claims of an Identity header value.
func passport(t *testing.T, identity string) string {
	t.Helper()
	tok, _, _ := strings.Cut(identity, ";")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("Identity %q is not a full-form JWS", identity)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Two servers: A authenticates its user and signs the call (attestation
// A: the user calls from its own number); B trusts A, verifies the
// Identity (fetching the certificate over HTTPS) and passes the result to
// the called phone as verstat on P-Asserted-Identity. Calls reaching B
// from a trusted peer with a tampered, expired or missing Identity are
// refused (B's policy: reject, Identity required).
func TestSTIRBetweenTwoServers(t *testing.T) {
	ctx := context.Background()
	pki := newSTIRPKI(t)

	invites := make(chan *sip.Request, 4)
	phone := accPhone(t, "420555000111@b.test", "", func(c *ua.Call) {
		invites <- c.Request()
		_ = c.Answer(c.Context())
	})
	b := startSrv(t, server.Config{
		Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"b.test"},
		Routing: proxy.Config{
			Trusted:   []string{"udp:127.0.0.1", "udp:127.0.0.20", "udp:127.0.0.21"},
			Locations: map[string][]string{"420555000111@b.test": {phone.Contact().URI.String()}},
		},
		Identity: server.Identity{STIR: server.STIR{Roots: pki.rootsFile, FetchCA: pki.fetchCAFile,
			Require: []string{"127.0.0.0/8"}, Reject: []string{"127.0.0.20"}}},
	})
	bAddr := b.Addrs()[0].Addr

	dirA := t.TempDir()
	addUser(t, dirA, "420111222333", "a.test")
	a, err := server.New(server.Config{
		Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"a.test"}, DataDir: dirA, DNS: noDNS(t),
		Routing: proxy.Config{
			Routes: map[string][]string{"b.test": {"udp:" + bAddr.String()}},
			Rules:  []proxy.Rule{{Domain: "b.test", Action: proxy.ActionResolve}},
		},
		Identity: server.Identity{STIR: server.STIR{Key: pki.keyFile, X5U: pki.x5u}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	alice, err := ua.New(ua.Config{User: "420111222333@a.test", Password: "secret", Server: a.Addrs()[0].Addr.String(),
		T1: accT1, T2: 8 * accT1, T4: 10 * accT1, TimerD: 10 * accT1})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()

	t.Run("signed by A, verified by B", func(t *testing.T) {
		call, err := alice.Call(ctx, "sip:420555000111@b.test")
		if err != nil {
			t.Fatal(err)
		}
		defer call.Hangup(ctx)
		inv := <-invites
		id := inv.Get("Identity")
		if id == "" {
			t.Fatal("the call reached the phone without an Identity header")
		}
		claims := passport(t, id)
		for _, want := range []string{`"attest":"A"`, `"orig":{"tn":"420111222333"}`, `"dest":{"tn":["420555000111"]}`} {
			if !strings.Contains(claims, want) {
				t.Errorf("PASSporT %s lacks %s", claims, want)
			}
		}
		if !strings.Contains(id, "info=<"+pki.x5u+">") || !strings.Contains(id, "ppt=shaken") {
			t.Errorf("Identity parameters: %s", id)
		}
		pai := inv.Get("P-Asserted-Identity")
		if !strings.Contains(pai, "sip:420111222333;verstat=TN-Validation-Passed@a.test") {
			t.Fatalf("P-Asserted-Identity at the phone: %q, want A's user with verstat passed", pai)
		}
	})

	// Raw INVITEs from another trusted peer (127.0.0.20).
	signer, err := stir.NewSigner(pki.keyPEM, pki.x5u)
	if err != nil {
		t.Fatal(err)
	}
	send := func(t *testing.T, from, identity string) *sip.Response {
		t.Helper()
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(from), 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		local := c.LocalAddr().String()
		extra := ""
		if identity != "" {
			extra = "Identity: " + identity + "\r\n"
		}
		msg := "INVITE sip:420555000111@b.test SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + local + time.Now().Format("150405.000000") + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:420111222333@a.test>;tag=t1\r\nTo: <sip:420555000111@b.test>\r\n" +
			"Call-ID: stir-" + time.Now().Format("150405.000000") + "\r\nCSeq: 1 INVITE\r\n" +
			"Contact: <sip:peer@" + local + ">\r\n" + extra + "Content-Length: 0\r\n\r\n"
		if _, err := c.WriteToUDPAddrPort([]byte(msg), bAddr); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65536)
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatal("no final response")
			}
			m, err := sip.Parse(buf[:n])
			if err != nil {
				t.Fatal(err)
			}
			if res := m.(*sip.Response); res.StatusCode >= 200 {
				return res
			}
		}
	}
	// tampered is a header signed for another calling number, with the
	// number in the payload changed back and the signature kept.
	tampered := func() string {
		h, err := signer.Sign("420111222334", "420555000111", stir.AttestFull, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tok, params, _ := strings.Cut(h, ";")
		p := strings.Split(tok, ".")
		claims, _ := base64.RawURLEncoding.DecodeString(p[1])
		p[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(claims), "420111222334", "420111222333", 1)))
		return strings.Join(p, ".") + ";" + params
	}
	for _, tc := range []struct {
		name     string
		identity func() string
		code     int
	}{
		{"missing where required: 428", func() string { return "" }, 428},
		{"tampered: 438", tampered, 438},
		{"expired: 403 Stale Date", func() string {
			h, err := signer.Sign("420111222333", "420555000111", stir.AttestFull, "", time.Now().Add(-2*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			return h
		}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := send(t, "127.0.0.20", tc.identity())
			if res.StatusCode != tc.code {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tc.code)
			}
			if tc.code == 403 && res.Reason != "Stale Date" {
				t.Errorf("reason %q, want Stale Date", res.Reason)
			}
		})
	}
	select {
	case inv := <-invites:
		t.Fatalf("a refused call reached the phone: %s", inv.CallID)
	default:
	}

	// A source whose failures are not refused: the call goes on, marked.
	t.Run("tampered from a source not in reject: marked and passed on", func(t *testing.T) {
		if res := send(t, "127.0.0.21", tampered()); res.StatusCode != 200 {
			t.Fatalf("got %d, want the phone's 200", res.StatusCode)
		}
		select {
		case inv := <-invites:
			if r := inv.Get("Reason"); !strings.Contains(r, "cause=438") {
				t.Errorf("Reason %q, want cause=438", r)
			}
			if u := inv.From.URI.User; !strings.HasSuffix(u, ";verstat=TN-Validation-Failed") {
				t.Errorf("From user %q, want verstat=TN-Validation-Failed", u)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the marked call never reached the phone")
		}
	})
}

// RFC 3325: the server asserts the identity it authenticated, and no
// identity an untrusted source claims travels on.
func TestAssertedIdentity(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	addUser(t, dir, "alice", "example.test")
	invites := make(chan *sip.Request, 2)
	bob := accPhone(t, "bob@example.test", "", func(c *ua.Call) {
		invites <- c.Request()
		_ = c.Reject(486, "")
	})
	s := startSrv(t, server.Config{
		Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"}, DataDir: dir,
		Routing: proxy.Config{Locations: map[string][]string{"bob@example.test": {bob.Contact().URI.String()}}},
	})
	srvAddr := s.Addrs()[0].Addr

	alice, err := ua.New(ua.Config{User: "alice@example.test", Password: "secret", Server: srvAddr.String(),
		T1: accT1, T2: 8 * accT1, T4: 10 * accT1, TimerD: 10 * accT1})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.Call(ctx, "sip:bob@example.test"); accStatus(err) != 486 {
		t.Fatalf("call: %v, want 486 from bob", err)
	}
	inv := <-invites
	if got := inv.Values("P-Asserted-Identity"); len(got) != 1 || got[0] != "<sip:alice@example.test>" {
		t.Fatalf("P-Asserted-Identity at bob: %q, want alice's AOR alone", got)
	}

	// A caller of another domain (not authenticated, not trusted) claims
	// an identity: it is removed.
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bKpai1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:mallory@elsewhere.test>;tag=m1\r\nTo: <sip:bob@example.test>\r\n" +
		"Call-ID: pai-forged\r\nCSeq: 1 INVITE\r\nContact: <sip:mallory@" + local + ">\r\n" +
		"P-Asserted-Identity: <sip:ceo@example.test>\r\nP-Preferred-Identity: <sip:ceo@example.test>\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := c.WriteToUDPAddrPort([]byte(msg), srvAddr); err != nil {
		t.Fatal(err)
	}
	select {
	case inv := <-invites:
		if inv.Get("P-Asserted-Identity") != "" || inv.Get("P-Preferred-Identity") != "" {
			t.Fatalf("a forged identity reached bob: PAI %q PPI %q", inv.Get("P-Asserted-Identity"), inv.Get("P-Preferred-Identity"))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the INVITE never reached bob")
	}
}

// Toll fraud: a user limited to one call at a time gets 486 with a
// Warning for a second call while the first rings, and can call again
// once it ended.
func TestConcurrentCallLimit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	addUser(t, dir, "alice", "example.test")
	ringing := make(chan *ua.Call, 4)
	bob := accPhone(t, "bob@example.test", "", func(c *ua.Call) {
		_ = c.Ring(c.Context())
		ringing <- c
		<-c.Done()
	})
	s := startSrv(t, server.Config{
		Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"}, DataDir: dir,
		Routing:  proxy.Config{Locations: map[string][]string{"bob@example.test": {bob.Contact().URI.String()}}},
		Security: security.Config{Limits: security.LimitsConfig{ConcurrentCalls: 1}},
	})
	alice, err := ua.New(ua.Config{User: "alice@example.test", Password: "secret", Server: s.Addrs()[0].Addr.String(),
		T1: accT1, T2: 8 * accT1, T4: 10 * accT1, TimerD: 10 * accT1})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	first, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := alice.Call(first, "sip:bob@example.test"); done <- err }()
	var rung *ua.Call
	select {
	case rung = <-ringing:
	case <-time.After(5 * time.Second):
		t.Fatal("the first call never rang")
	}
	_, err = alice.Call(ctx, "sip:bob@example.test")
	var se *ua.StatusError
	if !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("second call while the first rings: %v, want 486", err)
	}
	if w := se.Response.Get("Warning"); !strings.Contains(w, "too many calls at once") {
		t.Fatalf("Warning %q", w)
	}
	cancel() // the first call is cancelled (487)
	<-done
	<-rung.Done()
	// The slot is free again: the next call rings.
	third, cancel3 := context.WithCancel(ctx)
	defer cancel3()
	go func() { _, _ = alice.Call(third, "sip:bob@example.test") }()
	select {
	case <-ringing:
	case <-time.After(5 * time.Second):
		t.Fatal("a call after the first ended was refused")
	}
}

// addUser adds user@domain with password "secret" to the store in dir,
// before a server opens it.
func addUser(t *testing.T, dir, user, domain string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddUser(ctx, auth.NewUser(user, domain, "secret")); err != nil {
		t.Fatal(err)
	}
}
