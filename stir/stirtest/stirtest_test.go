package stirtest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/stir"
	"github.com/hlas-voip/hlas/stir/stirtest"
)

// tnAuth returns the leaf's TNAuthList as package stir parses it, and
// whether the extension is critical.
func tnAuth(t *testing.T, c *x509.Certificate) (l stir.TNAuthList, critical, ok bool) {
	t.Helper()
	for _, e := range c.Extensions {
		if e.Id.Equal(stir.OIDTNAuthList) {
			l, err := stir.ParseTNAuthList(e.Value)
			if err != nil {
				t.Fatalf("TNAuthList does not parse: %v", err)
			}
			return l, e.Critical, true
		}
	}
	return stir.TNAuthList{}, false, false
}

func TestPKI(t *testing.T) {
	before := time.Now()
	root := stirtest.NewCA(t, "test root")
	inter := root.Intermediate(t, "test intermediate")
	other := stirtest.NewCA(t, "other root")

	for _, c := range []*stirtest.CA{root, inter} {
		if !c.Cert.IsCA || c.Cert.PublicKeyAlgorithm != x509.ECDSA || c.Key.Curve.Params().Name != "P-256" {
			t.Errorf("%s: IsCA %v, %v %s", c.Cert.Subject.CommonName, c.Cert.IsCA, c.Cert.PublicKeyAlgorithm, c.Key.Curve.Params().Name)
		}
		if !c.Key.PublicKey.Equal(c.Cert.PublicKey) {
			t.Errorf("%s: Key does not match Cert", c.Cert.Subject.CommonName)
		}
		if nb, na := c.Cert.NotBefore, c.Cert.NotAfter; nb.After(before.Add(-59*time.Minute)) || na.Before(before.Add(23*time.Hour)) {
			t.Errorf("%s: valid %v..%v, want about now-1h..now+24h", c.Cert.Subject.CommonName, nb, na)
		}
	}
	if root.Cert.CheckSignatureFrom(root.Cert) != nil || inter.Cert.CheckSignatureFrom(root.Cert) != nil {
		t.Error("root not self-signed or intermediate not signed by root")
	}
	if root.Cert.SerialNumber.Cmp(inter.Cert.SerialNumber) == 0 {
		t.Error("root and intermediate share a serial number")
	}

	verify := func(leaf *x509.Certificate, roots ...*stirtest.CA) error {
		// A critical TNAuthList is the STI verifier's to handle, not x509's.
		c := *leaf
		c.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(c.UnhandledCriticalExtensions),
			func(id asn1.ObjectIdentifier) bool { return id.Equal(stir.OIDTNAuthList) })
		leaf = &c
		inters := x509.NewCertPool()
		inters.AddCert(inter.Cert)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: stirtest.Pool(roots...), Intermediates: inters,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}

	t.Run("default", func(t *testing.T) {
		leaf, key := inter.Leaf(t, stirtest.LeafOptions{})
		if !key.PublicKey.Equal(leaf.PublicKey) {
			t.Error("key does not match the leaf")
		}
		if err := verify(leaf, root); err != nil {
			t.Errorf("leaf does not chain to the root: %v", err)
		}
		if err := verify(leaf, other); err == nil {
			t.Error("leaf chains to an unrelated root")
		}
		if err := verify(leaf, other, root); err != nil {
			t.Errorf("Pool of two CAs: %v", err)
		}
		l, crit, ok := tnAuth(t, leaf)
		if !ok || crit || !slices.Equal(l.SPCs, []string{"709J"}) || len(l.TNs) != 0 || len(l.Ranges) != 0 {
			t.Errorf("TNAuthList %+v (present %v, critical %v), want SPC 709J", l, ok, crit)
		}
		if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("leaf IsCA %v, KeyUsage %v", leaf.IsCA, leaf.KeyUsage)
		}
	})
	for _, tt := range []struct {
		name     string
		o        stirtest.LeafOptions
		present  bool
		critical bool
		spcs     []string
		tns      []string
	}{
		{"SPC", stirtest.LeafOptions{SPC: "123A"}, true, false, []string{"123A"}, nil},
		{"TNs only", stirtest.LeafOptions{TNs: []string{"12025550100", "12025550101"}}, true, false, nil, []string{"12025550100", "12025550101"}},
		{"SPC and TNs", stirtest.LeafOptions{SPC: "123A", TNs: []string{"12025550100"}}, true, false, []string{"123A"}, []string{"12025550100"}},
		{"critical", stirtest.LeafOptions{Critical: true}, true, true, []string{"709J"}, nil},
		{"no TNAuthList", stirtest.LeafOptions{NoTNAuthList: true, SPC: "123A"}, false, false, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaf, _ := inter.Leaf(t, tt.o)
			l, crit, ok := tnAuth(t, leaf)
			if ok != tt.present || crit != tt.critical || !slices.Equal(l.SPCs, tt.spcs) || !slices.Equal(l.TNs, tt.tns) {
				t.Errorf("TNAuthList %+v (present %v, critical %v), want SPCs %v TNs %v (present %v, critical %v)",
					l, ok, crit, tt.spcs, tt.tns, tt.present, tt.critical)
			}
			if err := verify(leaf, root); err != nil {
				t.Errorf("leaf does not chain to the root: %v", err)
			}
		})
	}
	t.Run("validity", func(t *testing.T) {
		nb := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		na := nb.Add(48 * time.Hour)
		leaf, _ := inter.Leaf(t, stirtest.LeafOptions{NotBefore: nb, NotAfter: na})
		if !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na) {
			t.Errorf("valid %v..%v, want %v..%v", leaf.NotBefore, leaf.NotAfter, nb, na)
		}
		// Only NotAfter given: NotBefore keeps its default.
		leaf, _ = inter.Leaf(t, stirtest.LeafOptions{NotAfter: time.Now().Add(time.Hour)})
		if leaf.NotBefore.After(time.Now().Add(-59 * time.Minute)) {
			t.Errorf("NotBefore %v, want about an hour ago", leaf.NotBefore)
		}
		if err := verify(leaf, root); err != nil {
			t.Errorf("leaf does not chain to the root: %v", err)
		}
	})
}

func TestPEM(t *testing.T) {
	root := stirtest.NewCA(t, "test root")
	inter := root.Intermediate(t, "test intermediate")
	leaf, key := inter.Leaf(t, stirtest.LeafOptions{})

	rest := stirtest.PEMChain(leaf, inter.Cert)
	for i, want := range []*x509.Certificate{leaf, inter.Cert} {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil || b.Type != "CERTIFICATE" {
			t.Fatalf("block %d: %v", i, b)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil || !c.Equal(want) {
			t.Errorf("block %d: %v, not certificate %q", i, err, want.Subject.CommonName)
		}
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		t.Errorf("trailing data %q", rest)
	}
	if len(stirtest.PEMChain()) != 0 {
		t.Error("PEMChain() not empty")
	}

	b, rest := pem.Decode(stirtest.KeyPEM(t, key))
	if b == nil || b.Type != "PRIVATE KEY" || len(rest) != 0 {
		t.Fatalf("KeyPEM: block %v, rest %q", b, rest)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(k) {
		t.Error("KeyPEM does not decode to the key")
	}
}

func TestX5UServer(t *testing.T) {
	s := stirtest.NewX5UServer(t)
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") || strings.HasSuffix(s.URL, "/") {
		t.Errorf("URL %q", s.URL)
	}
	get := func(c *http.Client, path string) (int, string, string) {
		t.Helper()
		resp, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}

	if code, _, _ := get(s.Client, "/sti/709J.pem"); code != http.StatusNotFound {
		t.Errorf("before Set: %d, want 404", code)
	}
	body := []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	s.Set("/sti/709J.pem", body)
	body[0] = 'X' // Set keeps its own copy
	code, ct, got := get(s.Client, "/sti/709J.pem")
	if code != http.StatusOK || ct != "application/pem-certificate-chain" || !strings.HasPrefix(got, "-----BEGIN CERTIFICATE") {
		t.Errorf("after Set: %d %q %q", code, ct, got)
	}
	s.Set("/sti/709J.pem", []byte{0x30, 0x03, 0x02, 0x01, 0x01})
	if code, ct, got := get(s.Client, "/sti/709J.pem"); code != http.StatusOK || ct != "application/pkix-cert" || got != "\x30\x03\x02\x01\x01" {
		t.Errorf("after a second Set: %d %q %q", code, ct, got)
	}
	if code, _, _ := get(s.Client, "/other.pem"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", code)
	}
	for path, want := range map[string]int{"/sti/709J.pem": 3, "/other.pem": 1, "/never.pem": 0} {
		if n := s.Fetches(path); n != want {
			t.Errorf("Fetches(%q) = %d, want %d", path, n, want)
		}
	}

	// CertPEM is the certificate a client other than Client must trust;
	// without it the server is not trusted.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CertPEM) {
		t.Fatal("CertPEM holds no certificate")
	}
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer trusting.CloseIdleConnections()
	if code, _, _ := get(trusting, "/sti/709J.pem"); code != http.StatusOK {
		t.Errorf("client trusting CertPEM: %d", code)
	}
	stranger := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
	defer stranger.CloseIdleConnections()
	if _, err := stranger.Get(s.URL + "/sti/709J.pem"); err == nil {
		t.Error("a client trusting nothing reached the server")
	}
}

// TestWithStir is the fixture's purpose: package stir signs with a leaf's
// key and verifies against the root, fetching the chain from the server.
func TestWithStir(t *testing.T) {
	root := stirtest.NewCA(t, "STI-PA")
	inter := root.Intermediate(t, "STI-CA")
	srv := stirtest.NewX5UServer(t)
	v, err := stir.NewVerifier(stir.VerifierConfig{Roots: stirtest.Pool(root), Client: srv.Client})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		o    stirtest.LeafOptions
		code int
		spc  string
	}{
		{"SPC", stirtest.LeafOptions{}, stir.CodeValid, "709J"},
		{"TN", stirtest.LeafOptions{TNs: []string{"12025550100"}}, stir.CodeValid, ""},
		{"TN not the caller's", stirtest.LeafOptions{TNs: []string{"12025550111"}}, stir.CodeUnsupportedCredential, ""},
		{"no TNAuthList", stirtest.LeafOptions{NoTNAuthList: true}, stir.CodeUnsupportedCredential, ""},
		{"expired", stirtest.LeafOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, stir.CodeUnsupportedCredential, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaf, key := inter.Leaf(t, tt.o)
			path := "/sti/" + strings.ReplaceAll(tt.name, " ", "_") + ".pem"
			srv.Set(path, stirtest.PEMChain(leaf, inter.Cert))
			signer, err := stir.NewSigner(stirtest.KeyPEM(t, key), srv.URL+path)
			if err != nil {
				t.Fatal(err)
			}
			h, err := signer.Sign("12025550100", "12025550199", stir.AttestFull, "", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			r := v.Verify(context.Background(), h, "12025550100", "12025550199")
			if r.Code != tt.code || r.SPC != tt.spc {
				t.Errorf("Verify: %d %v, SPC %q; want %d, SPC %q", r.Code, r.Err, r.SPC, tt.code, tt.spc)
			}
			if n := srv.Fetches(path); n != 1 {
				t.Errorf("%d fetches, want 1", n)
			}
		})
	}
}
