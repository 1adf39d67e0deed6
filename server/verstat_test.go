package server

import (
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/stir/stirtest"
)

func TestWithVerstat(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<sip:+12155551212@example.com;user=phone>", "<sip:+12155551212;verstat=TN-Validation-Passed@example.com;user=phone>"},
		{`"Alice" <sip:420111@a.test>`, `"Alice" <sip:420111;verstat=TN-Validation-Passed@a.test>`},
		{"<tel:+12155551212;npdi>", "<tel:+12155551212;verstat=TN-Validation-Passed;npdi>"},
		{"tel:+1215", "tel:+1215;verstat=TN-Validation-Passed"},
		// A verstat already there (from an untrusted hop before) is replaced.
		{"<sip:+1215;verstat=TN-Validation-Failed@x.test>", "<sip:+1215;verstat=TN-Validation-Passed@x.test>"},
	} {
		got, ok := withVerstat(tc.in, "TN-Validation-Passed")
		if !ok || got != tc.want {
			t.Errorf("withVerstat(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"<sip:example.com>", "<mailto:a@b>", "<sip:1@a.test"} {
		if got, ok := withVerstat(bad, "x"); ok || got != bad {
			t.Errorf("withVerstat(%q) = %q, %v; want it unchanged", bad, got, ok)
		}
	}
}

func TestURIUser(t *testing.T) {
	for in, want := range map[string]string{
		`"A" <sip:%2B420111@a.test;user=phone>`: "+420111",
		"<tel:+1-215-555;phone-context=x>":      "+1-215-555",
		"sips:bob;verstat=x@b.test":             "bob",
		"<sip:b.test>":                          "",
		"garbage":                               "",
	} {
		if got := uriUser(in); got != want {
			t.Errorf("uriUser(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIdentityConfigRefusals(t *testing.T) {
	for name, c := range map[string]Identity{
		"key without x5u":   {STIR: STIR{Key: "k.pem"}},
		"x5u over http":     {STIR: STIR{Key: "k.pem", X5U: "http://cert.example/c.pem"}},
		"attestation D":     {STIR: STIR{AttestOwn: "D"}},
		"require, no roots": {STIR: STIR{Require: []string{"192.0.2.1"}}},
		"require not an IP": {STIR: STIR{Roots: "r.pem", Require: []string{"gw.example"}}},
		"number not E.164":  {STIR: STIR{Numbers: map[string][]string{"a@b": {"12345678901234567"}}}},
		"negative timeout":  {STIR: STIR{Timeout: -1}},
	} {
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (Identity{STIR: STIR{Key: "k.pem", X5U: "https://cert.example/c.pem", AttestTrusted: "C",
		Roots: "r.pem", Require: []string{"192.0.2.0/24"}}}).validate(); err != nil {
		t.Errorf("a good section refused: %v", err)
	}
}

func TestAttestation(t *testing.T) {
	root := stirtest.NewCA(t, "root")
	_, key := root.Leaf(t, stirtest.LeafOptions{})
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, stirtest.KeyPEM(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{reg: prometheus.NewRegistry()}
	id, err := newIdentity(s, Identity{STIR: STIR{Key: keyFile, X5U: "https://cert.example/c.pem", AttestTrusted: "C",
		Numbers: map[string][]string{"alice@example.test": {"+420 222 333 444"}}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to, aor string
		gateway             bool
		attest              string // "" : not signed
	}{
		{"the user's own number as its name", "420111222333", "420555000111", "420111222333@example.test", false, "A"},
		{"a number listed for the user", "+420222333444", "420555000111", "alice@example.test", false, "A"},
		{"another number", "420999888777", "420555000111", "alice@example.test", false, "B"},
		{"a trusted peer's call", "420999888777", "420555000111", "", true, "C"},
		{"not a telephone number", "alice", "420555000111", "alice@example.test", false, ""},
		{"to a name", "420111222333", "bob", "420111222333@example.test", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := sip.ParseString("INVITE sip:" + tc.to + "@b.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
				"From: <sip:" + tc.from + "@example.test>;tag=1\r\nTo: <sip:" + tc.to + "@b.test>\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\n" +
				"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
			if err != nil {
				t.Fatal(err)
			}
			req := m.(*sip.Request)
			id.sign(req, tc.aor, tc.gateway)
			h := req.Get("Identity")
			if tc.attest == "" {
				if h != "" {
					t.Fatalf("signed: %s", h)
				}
				return
			}
			tok, _, _ := strings.Cut(h, ";")
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("Identity %q", h)
			}
			claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
			if !strings.Contains(string(claims), `"attest":"`+tc.attest+`"`) {
				t.Fatalf("claims %s, want attest %s", claims, tc.attest)
			}
		})
	}
}

// A user calling from a number of its own (identity.stir.numbers) is
// asserted with that number and signed with attestation A, the way the
// handler step does it: P-Asserted-Identity first, then the signature
// from it. A number not its own leaves the AOR asserted, and the call
// unsigned (a verifier would find orig and P-Asserted-Identity apart).
func TestAssertedNumberSigned(t *testing.T) {
	root := stirtest.NewCA(t, "root")
	_, key := root.Leaf(t, stirtest.LeafOptions{})
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, stirtest.KeyPEM(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{reg: prometheus.NewRegistry()}
	id, err := newIdentity(s, Identity{STIR: STIR{Key: keyFile, X5U: "https://cert.example/c.pem",
		Numbers: map[string][]string{"alice@example.test": {"+420 222 333 444"}}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	alice := auth.Identity{Username: "alice", Domain: "example.test", Authenticated: true}
	for _, tc := range []struct {
		from, pai, orig string // orig "": not signed
	}{
		{"+420222333444", `"Alice" <sip:+420222333444@example.test;user=phone>`, "420222333444"},
		{"+420999888777", `"Alice" <sip:alice@example.test>`, ""},
		{"alice", `"Alice" <sip:alice@example.test>`, ""},
	} {
		m, err := sip.ParseString("INVITE sip:420555000111@b.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
			"From: \"Alice\" <sip:" + tc.from + "@example.test>;tag=1\r\nTo: <sip:420555000111@b.test>\r\nCall-ID: a\r\n" +
			"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		pai := id.assertedIdentity(req, alice)
		if pai != tc.pai {
			t.Errorf("From %s: P-Asserted-Identity %q, want %q", tc.from, pai, tc.pai)
		}
		req.Add("P-Asserted-Identity", pai)
		id.sign(req, alice.AOR(), false)
		h := req.Get("Identity")
		if tc.orig == "" {
			if h != "" {
				t.Errorf("From %s: signed %s", tc.from, h)
			}
			continue
		}
		tok, _, _ := strings.Cut(h, ";")
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("From %s: Identity %q", tc.from, h)
		}
		claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
		if !strings.Contains(string(claims), `"attest":"A"`) || !strings.Contains(string(claims), `"orig":{"tn":"`+tc.orig+`"}`) {
			t.Errorf("From %s: claims %s, want attestation A from %s", tc.from, claims, tc.orig)
		}
	}
}

// A verification result written by an untrusted source is removed from
// its From and P-Asserted-Identity; the rest of the URIs stays.
func TestDropVerstat(t *testing.T) {
	m, err := sip.ParseString("INVITE sip:bob@b.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
		"From: <sip:+1215;VerStat=TN-Validation-Passed;isub=7@a.test;user=phone>;tag=1\r\nTo: <sip:bob@b.test>\r\n" +
		"Call-ID: a\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
		"P-Asserted-Identity: \"X\" <sip:+1215;verstat=TN-Validation-Passed@a.test>, <tel:+1215;verstat=TN-Validation-Passed;npdi>\r\n" +
		"Subject: x;verstat=TN-Validation-Passed\r\nContent-Length: 0\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	dropVerstat(req)
	if u := req.From.URI.User; u != "+1215;isub=7" {
		t.Errorf("From user %q, want +1215;isub=7", u)
	}
	if v, want := req.Get("P-Asserted-Identity"), `"X" <sip:+1215@a.test>, <tel:+1215;npdi>`; v != want {
		t.Errorf("P-Asserted-Identity %q, want %q", v, want)
	}
	if v := req.Get("Subject"); v != "x;verstat=TN-Validation-Passed" {
		t.Errorf("another header changed: %q", v)
	}
	for _, s := range []string{"", ";", "a;verstat", "a;verstat=", ";VERSTAT=x", "a;b;verstat=x"} {
		want := strings.Contains(strings.ToLower(s), ";verstat=")
		if got := hasVerstat(s); got != want {
			t.Errorf("hasVerstat(%q) = %v", s, got)
		}
	}
}

// FuzzVerstat: header values from peers never panic the verstat marking,
// and a value it accepts carries exactly one verstat afterwards.
func FuzzVerstat(f *testing.F) {
	for _, s := range []string{"<sip:+1215@a.test;user=phone>", `"A" <tel:+1;verstat=x>`, "sip:@", "<sips:a;b;verstat=q@c>", "<", "tel:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		_ = uriUser(v)
		if w := withoutVerstat(v); withoutVerstat(w) != w {
			t.Fatalf("withoutVerstat not settled: %q → %q → %q", v, w, withoutVerstat(w))
		}
		_ = hasVerstat(v)
		out, ok := withVerstat(v, "TN-Validation-Passed")
		if !ok {
			if out != v {
				t.Fatalf("refused but changed: %q → %q", v, out)
			}
			return
		}
		if n := strings.Count(strings.ToLower(out), "verstat="); n < 1 {
			t.Fatalf("%q → %q: no verstat", v, out)
		}
	})
}
