package stir

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/stir/stirtest"
)

// expect checks a Result's code, reason and verstat.
func expect(t *testing.T, r Result, code int) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("Code = %d (%s, err %v), want %d", r.Code, r.Reason, r.Err, code)
	}
	if r.Reason != reasonPhrase(code) {
		t.Errorf("Reason = %q, want %q", r.Reason, reasonPhrase(code))
	}
	want := VerstatFailed
	switch code {
	case CodeValid:
		want = VerstatPassed
		if r.Err != nil {
			t.Errorf("valid result carries Err %v", r.Err)
		}
	case CodeUseIdentityHeader:
		want = VerstatNone
	}
	if r.Verstat != want {
		t.Errorf("Verstat = %q, want %q", r.Verstat, want)
	}
	if code != CodeValid && r.Err == nil {
		t.Error("failed result without Err")
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	f := newFixture(t, nil)
	iat := f.clock.Now().Unix()
	h := f.sign(t)

	if !strings.HasSuffix(h, ";info=<"+f.x5u+">;alg=ES256;ppt=shaken") {
		t.Errorf("header parameters: %s", h)
	}
	// RFC 8225 §9 / RFC 8588: the header JSON in lexicographic key order,
	// no whitespace, the URL unescaped.
	tok, _, _ := strings.Cut(h, ";")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	hdr, _ := b64.DecodeString(parts[0])
	if want := `{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"` + f.x5u + `"}`; string(hdr) != want {
		t.Errorf("header JSON %s, want %s", hdr, want)
	}
	pl, _ := b64.DecodeString(parts[1])
	want := fmt.Sprintf(`{"attest":"A","dest":{"tn":["%s"]},"iat":%d,"orig":{"tn":"%s"},"origid":"4437c7eb-8f7a-4f0e-a863-f53a0e60251a"}`,
		bob, iat, alice)
	if string(pl) != want {
		t.Errorf("payload JSON %s, want %s", pl, want)
	}
	if sig, err := b64.DecodeString(parts[2]); err != nil || len(sig) != 64 {
		t.Errorf("signature: %d bytes, %v; want 64", len(sig), err)
	}

	// The numbers as the server finds them in the SIP message.
	for _, nums := range [][2]string{
		{alice, bob},
		{"sip:+" + alice + "@198.51.100.7;user=phone", "sip:+" + bob + "@example.com"},
		{"<tel:+1-202-555-0100>", "tel:+1-202-555-0199"},
	} {
		r := f.v.Verify(context.Background(), h, nums[0], nums[1])
		expect(t, r, CodeValid)
		if r.SPC != "709J" {
			t.Errorf("SPC = %q, want 709J", r.SPC)
		}
		p := r.PASSporT
		if p.Orig != alice || len(p.Dest) != 1 || p.Dest[0] != bob || p.Attest != AttestFull ||
			p.IAT != iat || p.OrigID != "4437c7eb-8f7a-4f0e-a863-f53a0e60251a" ||
			p.Header != (PASSporTHeader{Alg: "ES256", Typ: "passport", Ppt: "shaken", X5U: f.x5u}) {
			t.Errorf("PASSporT = %+v", p)
		}
	}
	if n := f.srv.count("/cert.pem"); n != 1 {
		t.Errorf("%d fetches for 3 verifications, want 1", n)
	}
}

func TestSignGeneratesOrigID(t *testing.T) {
	f := newFixture(t, nil)
	h1, err := f.signer.Sign(alice, bob, AttestGateway, "", f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := f.signer.Sign(alice, bob, AttestGateway, "", f.clock.Now())
	r1 := f.v.Verify(context.Background(), h1, alice, bob)
	r2 := f.v.Verify(context.Background(), h2, alice, bob)
	expect(t, r1, CodeValid)
	expect(t, r2, CodeValid)
	id := r1.PASSporT.OrigID
	if len(id) != 36 || id[14] != '4' || strings.Count(id, "-") != 4 || id == r2.PASSporT.OrigID {
		t.Errorf("origids %q, %q: want distinct version 4 UUIDs", id, r2.PASSporT.OrigID)
	}
	if r1.PASSporT.Attest != AttestGateway {
		t.Errorf("attest %q", r1.PASSporT.Attest)
	}
}

func TestSignRejects(t *testing.T) {
	f := newFixture(t, nil)
	for _, tt := range []struct {
		name       string
		orig, dest string
		attest     Attestation
	}{
		{"orig not a number", "sip:alice@example.com", bob, AttestFull},
		{"dest not a number", alice, "sip:bob@example.com", AttestFull},
		{"attestation D", alice, bob, "D"},
		{"empty attestation", alice, bob, ""},
	} {
		if h, err := f.signer.Sign(tt.orig, tt.dest, tt.attest, "", f.clock.Now()); err == nil {
			t.Errorf("%s: signed %s", tt.name, h)
		}
	}
}

// token splits an Identity header into its decoded JSON parts, the
// signature part and the parameters.
func splitHeader(t *testing.T, h string) (hdr, pl map[string]any, sig, params string) {
	t.Helper()
	tok, params, _ := strings.Cut(h, ";")
	parts := strings.Split(tok, ".")
	for i, m := range []*map[string]any{&hdr, &pl} {
		raw, err := b64.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, m); err != nil {
			t.Fatal(err)
		}
	}
	return hdr, pl, parts[2], ";" + params
}

func joinHeader(t *testing.T, hdr, pl map[string]any, sig, params string) string {
	t.Helper()
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(pl)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(h) + "." + b64.EncodeToString(p) + "." + sig + params
}

func TestInvalidIdentityHeader(t *testing.T) {
	f := newFixture(t, nil)
	good := f.sign(t)
	tests := []struct {
		name   string
		header func() string
	}{
		{"RFC 8224 6.2 payload orig changed", func() string {
			hdr, pl, sig, params := splitHeader(t, good)
			pl["attest"] = "A"
			pl["orig"] = map[string]any{"tn": "12025550111"}
			return joinHeader(t, hdr, pl, sig, params)
		}},
		{"payload attest raised", func() string {
			h, _ := f.signer.Sign(alice, bob, AttestGateway, "x", f.clock.Now())
			hdr, pl, sig, params := splitHeader(t, h)
			pl["attest"] = "A"
			return joinHeader(t, hdr, pl, sig, params)
		}},
		{"signature character changed", func() string {
			tok, params, _ := strings.Cut(good, ";")
			i := strings.LastIndexByte(tok, '.') + 20
			c := byte('A')
			if tok[i] == 'A' {
				c = 'B'
			}
			return tok[:i] + string(c) + tok[i+1:] + ";" + params
		}},
		{"signature truncated", func() string {
			tok, params, _ := strings.Cut(good, ";")
			return tok[:len(tok)-4] + ";" + params
		}},
		{"signature of another key", func() string {
			return f.signWith(t, f.newSigner(t, newKey(t), f.x5u), f.clock.Now())
		}},
		{"RFC 8225 alg none", func() string {
			hdr, pl, _, params := splitHeader(t, good)
			hdr["alg"] = "none"
			return joinHeader(t, hdr, pl, "", params)
		}},
		{"header alg RS256", func() string {
			hdr, pl, sig, params := splitHeader(t, good)
			hdr["alg"] = "RS256"
			return joinHeader(t, hdr, pl, sig, params)
		}},
		{"RFC 8588 ppt not shaken", func() string {
			hdr, pl, sig, params := splitHeader(t, good)
			hdr["ppt"] = "div"
			return joinHeader(t, hdr, pl, sig, params)
		}},
		{"typ missing", func() string {
			hdr, pl, sig, params := splitHeader(t, good)
			delete(hdr, "typ")
			return joinHeader(t, hdr, pl, sig, params)
		}},
		{"alg parameter ES384", func() string { return strings.Replace(good, "alg=ES256", "alg=ES384", 1) }},
		{"ppt parameter div", func() string { return strings.Replace(good, "ppt=shaken", "ppt=div", 1) }},
		{"x5u differs from info", func() string {
			return strings.Replace(good, "info=<"+f.x5u+">", "info=<"+f.x5u+"?other>", 1)
		}},
		{"no origid", func() string {
			hdr, pl, sig, params := splitHeader(t, good)
			delete(pl, "origid")
			return joinHeader(t, hdr, pl, sig, params)
		}},
		{"no dest", func() string {
			hdr, pl, sig, params := splitHeader(t, good)
			pl["dest"] = map[string]any{"tn": []string{}}
			return joinHeader(t, hdr, pl, sig, params)
		}},
		{"padded base64", func() string {
			tok, params, _ := strings.Cut(good, ";")
			return tok + "==;" + params
		}},
		{"four parts", func() string {
			tok, params, _ := strings.Cut(good, ";")
			return tok + ".e30;" + params
		}},
		{"no info", func() string { tok, _, _ := strings.Cut(good, ";"); return tok }},
		{"not JSON", func() string {
			tok, params, _ := strings.Cut(good, ";")
			parts := strings.Split(tok, ".")
			return parts[0] + "." + b64.EncodeToString([]byte("not json")) + "." + parts[2] + ";" + params
		}},
		{"garbage", func() string { return "!!!" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, f.v.Verify(context.Background(), tt.header(), alice, bob), CodeInvalidIdentityHeader)
		})
	}
}

// TestCompactFormRefused: the compact form (RFC 8224 §7.2) is refused with
// 438, since a SHAKEN PASSporT's attest and origid cannot be rebuilt.
func TestCompactFormRefused(t *testing.T) {
	f := newFixture(t, nil)
	tok, params, _ := strings.Cut(f.sign(t), ";")
	parts := strings.Split(tok, ".")
	r := f.v.Verify(context.Background(), parts[0]+".."+parts[2]+";"+params, alice, bob)
	expect(t, r, CodeInvalidIdentityHeader)
	if !errors.Is(r.Err, errCompact) {
		t.Errorf("Err = %v, want the compact-form error", r.Err)
	}
	if n := f.srv.count("/cert.pem"); n != 0 {
		t.Errorf("%d fetches for a refused header", n)
	}
}

func TestOrigDestMismatch(t *testing.T) {
	f := newFixture(t, nil)
	h := f.sign(t)
	for _, tt := range []struct{ name, orig, dest string }{
		{"RFC 8224 6.2 step 1 orig", "12025550111", bob},
		{"orig not a number", "sip:alice@example.com", bob},
		{"dest", alice, "12025550111"},
		{"dest not a number", alice, "sip:bob@example.com"},
		{"swapped", bob, alice},
	} {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, f.v.Verify(context.Background(), h, tt.orig, tt.dest), CodeInvalidIdentityHeader)
		})
	}
	if n := f.srv.count("/cert.pem"); n != 0 {
		t.Errorf("%d fetches for misaddressed headers, want none", n)
	}
}

func TestStaleDate(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	for _, tt := range []struct {
		name string
		iat  time.Time
		code int
	}{
		{"RFC 8224 4.1 60 s old", now.Add(-60 * time.Second), CodeValid},
		{"61 s old", now.Add(-61 * time.Second), CodeStaleDate},
		{"an hour old", now.Add(-time.Hour), CodeStaleDate},
		{"60 s ahead", now.Add(60 * time.Second), CodeValid},
		{"61 s ahead", now.Add(61 * time.Second), CodeStaleDate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, f.v.Verify(context.Background(), f.signWith(t, f.signer, tt.iat), alice, bob), tt.code)
		})
	}

	t.Run("MaxAge configurable", func(t *testing.T) {
		g := newFixture(t, func(c *VerifierConfig) { c.MaxAge = 5 * time.Second })
		h := g.sign(t)
		g.clock.Advance(5 * time.Second)
		expect(t, g.v.Verify(context.Background(), h, alice, bob), CodeValid)
		g.clock.Advance(time.Second)
		expect(t, g.v.Verify(context.Background(), h, alice, bob), CodeStaleDate)
	})
}

func TestBadIdentityInfo(t *testing.T) {
	t.Run("404", func(t *testing.T) {
		f := newFixture(t, nil)
		h := f.signWith(t, f.newSigner(t, f.leafKey, f.srv.srv.URL+"/missing.pem"), f.clock.Now())
		expect(t, f.v.Verify(context.Background(), h, alice, bob), CodeBadIdentityInfo)
	})
	t.Run("timeout", func(t *testing.T) {
		f := newFixture(t, func(c *VerifierConfig) { c.Timeout = 50 * time.Millisecond })
		release := make(chan struct{})
		defer close(release)
		x5u := f.srv.handle("/slow.pem", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		h := f.signWith(t, f.newSigner(t, f.leafKey, x5u), f.clock.Now())
		r := f.v.Verify(context.Background(), h, alice, bob)
		expect(t, r, CodeBadIdentityInfo)
		if !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Errorf("Err = %v, want a deadline", r.Err)
		}
	})
	t.Run("RFC 8224 7.3 not https", func(t *testing.T) {
		f := newFixture(t, nil)
		x5u := "http" + strings.TrimPrefix(f.x5u, "https")
		h := f.signWith(t, f.newSigner(t, f.leafKey, x5u), f.clock.Now())
		expect(t, f.v.Verify(context.Background(), h, alice, bob), CodeBadIdentityInfo)
		if n := f.srv.count("/cert.pem"); n != 0 {
			t.Errorf("fetched an http x5u %d times", n)
		}
	})
	t.Run("not a certificate", func(t *testing.T) {
		f := newFixture(t, nil)
		x5u := f.srv.serve("/junk.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
		h := f.signWith(t, f.newSigner(t, f.leafKey, x5u), f.clock.Now())
		expect(t, f.v.Verify(context.Background(), h, alice, bob), CodeBadIdentityInfo)
	})
	t.Run("too large", func(t *testing.T) {
		f := newFixture(t, func(c *VerifierConfig) { c.MaxCertSize = 100 })
		expect(t, f.v.Verify(context.Background(), f.sign(t), alice, bob), CodeBadIdentityInfo)
	})
	t.Run("DER accepted", func(t *testing.T) {
		// A single DER certificate: the leaf must then chain to a root itself.
		f := newFixture(t, nil)
		leaf, key := f.root.Leaf(t, stirtest.LeafOptions{SPC: "709J"})
		x5u := f.srv.serve("/cert.der", leaf.Raw)
		h := f.signWith(t, f.newSigner(t, key, x5u), f.clock.Now())
		expect(t, f.v.Verify(context.Background(), h, alice, bob), CodeValid)
	})
}

func TestUnsupportedCredential(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	other := stirtest.NewCA(t, "some other root")
	cases := []struct {
		name   string
		issuer *stirtest.CA
		opts   stirtest.LeafOptions
		ranges []TNRange // instead of opts: a TNAuthList of these ranges
		extra  bool      // put the intermediate in the chain
		code   int
	}{
		{"chain to another root", other.Intermediate(t, "other intermediate"), stirtest.LeafOptions{}, nil, true, CodeUnsupportedCredential},
		{"no intermediate in the chain", f.inter, stirtest.LeafOptions{}, nil, false, CodeUnsupportedCredential},
		{"expired leaf", f.inter, stirtest.LeafOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}, nil, true, CodeUnsupportedCredential},
		{"leaf not yet valid", f.inter, stirtest.LeafOptions{NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}, nil, true, CodeUnsupportedCredential},
		{"RFC 8226 no TNAuthList", f.inter, stirtest.LeafOptions{NoTNAuthList: true}, nil, true, CodeUnsupportedCredential},
		{"TNAuthList of numbers not covering orig", f.inter, stirtest.LeafOptions{TNs: []string{"12025550111"}}, nil, true, CodeUnsupportedCredential},
		{"TNAuthList range covering orig", f.inter, stirtest.LeafOptions{}, []TNRange{{"12025550100", 10}}, true, CodeValid},
		{"critical TNAuthList", f.inter, stirtest.LeafOptions{Critical: true}, nil, true, CodeValid},
	}
	for i, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			leaf, key := tt.issuer.Leaf(t, tt.opts)
			if tt.ranges != nil {
				leaf, key = leafWithTNAuth(t, tt.issuer, TNAuthList{Ranges: tt.ranges})
			}
			chain := stirtest.PEMChain(leaf)
			if tt.extra {
				chain = stirtest.PEMChain(leaf, tt.issuer.Cert)
			}
			x5u := f.srv.serve(fmt.Sprintf("/case%d.pem", i), chain)
			h := f.signWith(t, f.newSigner(t, key, x5u), f.clock.Now())
			expect(t, f.v.Verify(context.Background(), h, alice, bob), tt.code)
		})
	}

	t.Run("cached certificate expires", func(t *testing.T) {
		g := newFixture(t, func(c *VerifierConfig) { c.CacheTTL = 1000 * 24 * time.Hour })
		expect(t, g.v.Verify(context.Background(), g.sign(t), alice, bob), CodeValid)
		g.clock.Advance(48 * time.Hour) // past every certificate's NotAfter (a day on)
		expect(t, g.v.Verify(context.Background(), g.sign(t), alice, bob), CodeUnsupportedCredential)
		if n := g.srv.count("/cert.pem"); n != 1 {
			t.Errorf("%d fetches, want 1 (the expiry is found in the cache)", n)
		}
	})
}

func TestMissingIdentity(t *testing.T) {
	f := newFixture(t, nil)
	for _, h := range []string{"", "  "} {
		expect(t, f.v.Verify(context.Background(), h, alice, bob), CodeUseIdentityHeader)
	}
}

func TestCache(t *testing.T) {
	t.Run("hit", func(t *testing.T) {
		f := newFixture(t, nil)
		h := f.sign(t)
		if f.v.Cached(h) {
			t.Error("Cached before the first verification")
		}
		for range 5 {
			expect(t, f.v.Verify(context.Background(), h, alice, bob), CodeValid)
		}
		if !f.v.Cached(h) {
			t.Error("not Cached after a verification")
		}
		if n := f.srv.count("/cert.pem"); n != 1 {
			t.Errorf("%d fetches, want 1", n)
		}
		if s := f.v.Stats(); s.Fetches != 1 || s.Hits != 4 || s.Cached != 1 {
			t.Errorf("Stats = %+v", s)
		}
	})
	t.Run("TTL", func(t *testing.T) {
		f := newFixture(t, func(c *VerifierConfig) { c.CacheTTL = 10 * time.Minute })
		expect(t, f.v.Verify(context.Background(), f.sign(t), alice, bob), CodeValid)
		f.clock.Advance(10*time.Minute - time.Second)
		expect(t, f.v.Verify(context.Background(), f.sign(t), alice, bob), CodeValid)
		if n := f.srv.count("/cert.pem"); n != 1 {
			t.Errorf("%d fetches within the TTL, want 1", n)
		}
		f.clock.Advance(time.Second)
		if f.v.Cached(f.sign(t)) {
			t.Error("Cached after the TTL")
		}
		expect(t, f.v.Verify(context.Background(), f.sign(t), alice, bob), CodeValid)
		if n := f.srv.count("/cert.pem"); n != 2 {
			t.Errorf("%d fetches after the TTL, want 2", n)
		}
	})
	t.Run("Cache-Control max-age", func(t *testing.T) {
		f := newFixture(t, nil)
		chain := stirtest.PEMChain(f.leaf, f.inter.Cert)
		x5u := f.srv.handle("/short.pem", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=120")
			_, _ = w.Write(chain)
		})
		s := f.newSigner(t, f.leafKey, x5u)
		expect(t, f.v.Verify(context.Background(), f.signWith(t, s, f.clock.Now()), alice, bob), CodeValid)
		f.clock.Advance(119 * time.Second)
		expect(t, f.v.Verify(context.Background(), f.signWith(t, s, f.clock.Now()), alice, bob), CodeValid)
		f.clock.Advance(time.Second)
		expect(t, f.v.Verify(context.Background(), f.signWith(t, s, f.clock.Now()), alice, bob), CodeValid)
		if n := f.srv.count("/short.pem"); n != 2 {
			t.Errorf("%d fetches, want 2 (max-age=120 shortens the 1h TTL)", n)
		}
	})
	t.Run("negative", func(t *testing.T) {
		f := newFixture(t, nil)
		s := f.newSigner(t, f.leafKey, f.srv.srv.URL+"/gone.pem")
		for range 3 {
			expect(t, f.v.Verify(context.Background(), f.signWith(t, s, f.clock.Now()), alice, bob), CodeBadIdentityInfo)
		}
		if n := f.srv.count("/gone.pem"); n != 1 {
			t.Errorf("%d fetches of an unreachable x5u, want 1", n)
		}
		if !f.v.Cached(f.signWith(t, s, f.clock.Now())) {
			t.Error("failure not cached")
		}
		f.clock.Advance(30 * time.Second)
		expect(t, f.v.Verify(context.Background(), f.signWith(t, s, f.clock.Now()), alice, bob), CodeBadIdentityInfo)
		if n := f.srv.count("/gone.pem"); n != 2 {
			t.Errorf("%d fetches after NegativeTTL, want 2", n)
		}
		if st := f.v.Stats(); st.Failures != 2 {
			t.Errorf("Stats = %+v", st)
		}
	})
	t.Run("LRU bound", func(t *testing.T) {
		f := newFixture(t, func(c *VerifierConfig) { c.CacheSize = 2 })
		chain := stirtest.PEMChain(f.leaf, f.inter.Cert)
		var signers []*Signer
		for i := range 3 {
			signers = append(signers, f.newSigner(t, f.leafKey, f.srv.serve(fmt.Sprintf("/lru%d.pem", i), chain)))
		}
		verify := func(i int) {
			t.Helper()
			expect(t, f.v.Verify(context.Background(), f.signWith(t, signers[i], f.clock.Now()), alice, bob), CodeValid)
		}
		verify(0)
		verify(1)
		verify(0) // 0 is now the most recently used
		verify(2) // evicts 1
		if s := f.v.Stats(); s.Cached != 2 {
			t.Errorf("%d entries cached, want 2", s.Cached)
		}
		verify(0)
		verify(1)
		for i, want := range []int{1, 2, 1} {
			if n := f.srv.count(fmt.Sprintf("/lru%d.pem", i)); n != want {
				t.Errorf("x5u %d fetched %d times, want %d", i, n, want)
			}
		}
	})
}

// waitFor polls cond; the test fails if it does not hold within a generous
// time (this is a liveness guard, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCoalescing(t *testing.T) {
	f := newFixture(t, nil)
	chain := stirtest.PEMChain(f.leaf, f.inter.Cert)
	release := make(chan struct{})
	x5u := f.srv.handle("/slow.pem", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(chain)
	})
	h := f.signWith(t, f.newSigner(t, f.leafKey, x5u), f.clock.Now())

	const n = 50
	results := make([]Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = f.v.Verify(context.Background(), h, alice, bob) })
	}
	waitFor(t, "all verifications to wait for the one fetch", func() bool {
		return f.v.Stats().Coalesced == n-1
	})
	if f.v.Cached(h) {
		t.Error("Cached while the fetch is in flight")
	}
	close(release)
	wg.Wait()
	for i, r := range results {
		if r.Code != CodeValid {
			t.Errorf("verification %d: %d %v", i, r.Code, r.Err)
		}
	}
	if c := f.srv.count("/slow.pem"); c != 1 {
		t.Errorf("%d fetches for %d concurrent verifications, want 1", c, n)
	}
}

func TestWaiterContext(t *testing.T) {
	f := newFixture(t, nil)
	chain := stirtest.PEMChain(f.leaf, f.inter.Cert)
	release := make(chan struct{})
	x5u := f.srv.handle("/slow.pem", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(chain)
	})
	h := f.signWith(t, f.newSigner(t, f.leafKey, x5u), f.clock.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- f.v.Verify(ctx, h, alice, bob) }()
	waitFor(t, "the fetch to start", func() bool { return f.srv.count("/slow.pem") == 1 })
	cancel()
	r := <-done
	expect(t, r, CodeBadIdentityInfo)
	if !errors.Is(r.Err, context.Canceled) {
		t.Errorf("Err = %v, want cancelled", r.Err)
	}
	// The abandoned fetch goes on and fills the cache for the next call.
	close(release)
	waitFor(t, "the fetch to finish", func() bool { return f.v.Cached(h) })
	expect(t, f.v.Verify(context.Background(), h, alice, bob), CodeValid)
	if c := f.srv.count("/slow.pem"); c != 1 {
		t.Errorf("%d fetches, want 1", c)
	}
}

func TestMaxFetches(t *testing.T) {
	f := newFixture(t, func(c *VerifierConfig) { c.MaxFetches = 1 })
	chain := stirtest.PEMChain(f.leaf, f.inter.Cert)
	release := make(chan struct{})
	slow := f.srv.handle("/slow.pem", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(chain)
	})
	done := make(chan Result)
	go func() {
		done <- f.v.Verify(context.Background(), f.signWith(t, f.newSigner(t, f.leafKey, slow), f.clock.Now()), alice, bob)
	}()
	waitFor(t, "the first fetch to start", func() bool { return f.srv.count("/slow.pem") == 1 })
	r := f.v.Verify(context.Background(), f.sign(t), alice, bob)
	expect(t, r, CodeBadIdentityInfo)
	if f.v.Cached(f.sign(t)) {
		t.Error("a refused fetch was cached as a failure")
	}
	close(release)
	expect(t, <-done, CodeValid)
	expect(t, f.v.Verify(context.Background(), f.sign(t), alice, bob), CodeValid)
	if s := f.v.Stats(); s.Refused != 1 || s.Fetches != 2 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestNewVerifierNeedsRoots(t *testing.T) {
	if _, err := NewVerifier(VerifierConfig{}); err == nil {
		t.Error("NewVerifier without Roots succeeded")
	}
}

func TestNewSigner(t *testing.T) {
	k := newKey(t)
	sec1, _ := x509.MarshalECPrivateKey(k)
	sec1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	for _, tt := range []struct {
		name string
		key  []byte
		x5u  string
		ok   bool
	}{
		{"PKCS#8", stirtest.KeyPEM(t, k), "https://cert.example.org/709J.pem", true},
		{"SEC 1", sec1PEM, "https://cert.example.org/709J.pem", true},
		{"SEC 1 after EC PARAMETERS", append(params, sec1PEM...), "https://cert.example.org/709J.pem", true},
		{"P-384", stirtest.KeyPEM(t, p384), "https://cert.example.org/709J.pem", false},
		{"RSA", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}), "https://cert.example.org/709J.pem", false},
		{"not PEM", []byte("hello"), "https://cert.example.org/709J.pem", false},
		{"relative x5u", stirtest.KeyPEM(t, k), "/709J.pem", false},
		{"ftp x5u", stirtest.KeyPEM(t, k), "ftp://cert.example.org/709J.pem", false},
		{"x5u with >", stirtest.KeyPEM(t, k), "https://cert.example.org/a>b", false},
	} {
		s, err := NewSigner(tt.key, tt.x5u)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err == nil && s.X5U() != tt.x5u {
			t.Errorf("%s: X5U = %q", tt.name, s.X5U())
		}
	}
}
