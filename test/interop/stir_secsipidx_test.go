//go:build interop

package interop

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/stir"
	"github.com/hlas-voip/hlas/stir/stirtest"
)

// secsipidxTimeout bounds one secsipidx run.
const secsipidxTimeout = 20 * time.Second

// The numbers of the calls signed in both directions.
const (
	stirCaller = "12025550100"
	stirCallee = "12025550199"
)

// stirPKI is an STI PKI made by the test: a root (the STI-PA's), an
// intermediate (the STI-CA's) and a SHAKEN leaf with a TNAuthList, whose
// chain is served over HTTPS by a local server with its own TLS
// certificate (so the HTTPS trust and the STI trust stay separate, as in
// production).
type stirPKI struct {
	dir     string // files for secsipidx
	rootPEM string // path: the STI root, for secsipidx -ca-file
	keyPEM  []byte // the leaf's private key (SEC 1 PEM, as openssl writes)
	keyFile string
	roots   *x509.CertPool
	srv     *stirtest.X5UServer
	tlsPEM  string // path: the HTTPS server's certificate, for SSL_CERT_FILE
	x5u     string
	otherCA string // path: a root that did not issue the chain
}

// x5uPath is where the chain is served.
const x5uPath = "/sti/709J.pem"

func newStirPKI(t *testing.T) *stirPKI {
	t.Helper()
	p := &stirPKI{dir: t.TempDir(), srv: stirtest.NewX5UServer(t)}
	root := stirtest.NewCA(t, "hlas interop STI-PA root")
	inter := root.Intermediate(t, "hlas interop STI-CA")
	other := stirtest.NewCA(t, "unrelated root")
	leaf, leafKey := inter.Leaf(t, stirtest.LeafOptions{SPC: "709J"})

	write := func(name string, data []byte) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sec1, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	p.keyFile = write("leaf-key.pem", p.keyPEM)
	p.rootPEM = write("sti-root.pem", stirtest.PEMChain(root.Cert))
	p.otherCA = write("other-root.pem", stirtest.PEMChain(other.Cert))
	p.roots = stirtest.Pool(root)

	p.srv.Set(x5uPath, stirtest.PEMChain(leaf, inter.Cert))
	p.tlsPEM = write("https-server.pem", p.srv.CertPEM)
	p.x5u = p.srv.URL + x5uPath
	return p
}

func (p *stirPKI) fetchCount() int { return p.srv.Fetches(x5uPath) }

func (p *stirPKI) verifier(t *testing.T) *stir.Verifier {
	t.Helper()
	v, err := stir.NewVerifier(stir.VerifierConfig{Roots: p.roots, Client: p.srv.Client})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// runSecsipidx runs secsipidx with args. SSL_CERT_FILE makes its HTTPS
// client (Go's) trust the local x5u server, and only it.
func (p *stirPKI) runSecsipidx(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), secsipidxTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "secsipidx", args...)
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+p.tlsPEM, "SSL_CERT_DIR="+p.dir)
	cmd.Dir = p.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func requireSecsipidx(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("secsipidx"); err != nil {
		t.Fatalf("secsipidx is required (Debian package secsipidx): %v", err)
	}
}

// TestSecsipidxSignsHlasVerifies: secsipidx's authentication service signs
// (sign-full: the full Identity header with info, alg and ppt), hlas's
// verification service fetches the chain from x5u, checks it against the
// STI root and accepts the header; what the header does not vouch for is
// refused with the RFC 8224 codes.
func TestSecsipidxSignsHlasVerifies(t *testing.T) {
	requireSecsipidx(t)
	p := newStirPKI(t)
	v := p.verifier(t)
	ctx := context.Background()

	out, err := p.runSecsipidx(t, "-sign-full", "-o", stirCaller, "-d", stirCallee, "-a", "A",
		"-orig-id", "4437c7eb-8f7a-4f0e-a863-f53a0e60251a", "-x5u", p.x5u, "-k", p.keyFile)
	if err != nil {
		t.Fatalf("secsipidx -sign-full: %v\n%s", err, out)
	}
	identity := strings.TrimSpace(out)
	t.Logf("secsipidx signed: %s", identity)

	r := v.Verify(ctx, identity, "sip:+"+stirCaller+"@198.51.100.7;user=phone", "tel:+"+stirCallee)
	if r.Code != stir.CodeValid || r.Verstat != stir.VerstatPassed {
		t.Fatalf("hlas verification of secsipidx's header: %d %s (%v), verstat %s", r.Code, r.Reason, r.Err, r.Verstat)
	}
	pp := r.PASSporT
	if pp.Attest != stir.AttestFull || pp.Orig != stirCaller || len(pp.Dest) != 1 || pp.Dest[0] != stirCallee ||
		pp.OrigID != "4437c7eb-8f7a-4f0e-a863-f53a0e60251a" || pp.Header.X5U != p.x5u || r.SPC != "709J" {
		t.Errorf("decoded %+v, SPC %q", pp, r.SPC)
	}
	if n := p.fetchCount(); n != 1 {
		t.Errorf("x5u fetched %d times, want 1", n)
	}

	t.Run("called number differs", func(t *testing.T) {
		r := v.Verify(ctx, identity, stirCaller, "12025550111")
		if r.Code != stir.CodeInvalidIdentityHeader {
			t.Errorf("got %d %v, want 438", r.Code, r.Err)
		}
		t.Logf("hlas: %d %s: %v", r.Code, r.Reason, r.Err)
	})
	t.Run("payload altered", func(t *testing.T) {
		tok, params, _ := strings.Cut(identity, ";")
		parts := strings.Split(tok, ".")
		// Attestation A → B in the JSON, signature kept.
		pl := strings.Replace(b64url(t, parts[1]), `"attest":"A"`, `"attest":"B"`, 1)
		forged := parts[0] + "." + b64urlEncode(pl) + "." + parts[2] + ";" + params
		r := v.Verify(ctx, forged, stirCaller, stirCallee)
		if r.Code != stir.CodeInvalidIdentityHeader {
			t.Errorf("got %d %v, want 438", r.Code, r.Err)
		}
		t.Logf("hlas: %d %s: %v", r.Code, r.Reason, r.Err)
	})
	t.Run("stale iat", func(t *testing.T) {
		// -sign builds the PASSporT from the parameters with the given iat
		// and prints the bare token; the header parameters are added here.
		iat := strconv.FormatInt(time.Now().Add(-2*time.Minute).Unix(), 10)
		out, err := p.runSecsipidx(t, "-sign", "-o", stirCaller, "-d", stirCallee, "-a", "B",
			"-orig-id", "6a8b6c1e-2d0f-4b55-9d3c-0d6e2c1f7a10", "-iat", iat, "-x5u", p.x5u, "-k", p.keyFile)
		if err != nil {
			t.Fatalf("secsipidx -sign: %v\n%s", err, out)
		}
		h := strings.TrimSpace(out) + ";info=<" + p.x5u + ">;alg=ES256;ppt=shaken"
		r := v.Verify(ctx, h, stirCaller, stirCallee)
		if r.Code != stir.CodeStaleDate {
			t.Errorf("got %d %v, want 403 Stale Date", r.Code, r.Err)
		}
		t.Logf("hlas: %d %s: %v", r.Code, r.Reason, r.Err)
	})
}

// TestSecsipidxVerifiesHlasSigns: hlas's Signer signs, secsipidx checks
// the header. secsipidx -check insists on -fpubkey, which it reads as a
// file or, when it is a URL, fetches; it is given the x5u URL, so it fetches
// the chain from the local HTTPS server as a verifier would (and also
// checks that info equals the PASSporT's x5u). -cert-verify 5 (time and
// custom CA) makes it verify the chain to -ca-file, the intermediate coming
// from the fetched chain. secsipidx has no options for the SIP numbers: it
// does not compare orig and dest with anything.
func TestSecsipidxVerifiesHlasSigns(t *testing.T) {
	requireSecsipidx(t)
	p := newStirPKI(t)
	signer, err := stir.NewSigner(p.keyPEM, p.x5u)
	if err != nil {
		t.Fatal(err)
	}
	identity, err := signer.Sign("+1-202-555-0100", "tel:+12025550199", stir.AttestFull, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hlas signed: %s", identity)
	check := func(identity, caFile string) (string, error) {
		return p.runSecsipidx(t, "-check", "-identity", identity, "-fpubkey", p.x5u, "-expire", "60",
			"-cert-verify", "5", "-ca-file", caFile, "-timeout", "5")
	}

	out, err := check(identity, p.rootPEM)
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("secsipidx -check of hlas's header: exit %v, output:\n%s", err, out)
	}
	if n := p.fetchCount(); n != 1 {
		t.Errorf("x5u fetched %d times by secsipidx, want 1", n)
	}

	// The same check must fail where it should, or the success above
	// proves nothing.
	t.Run("chain to another root", func(t *testing.T) {
		out, err := check(identity, p.otherCA)
		if err == nil || !strings.Contains(out, "not-ok") {
			t.Errorf("secsipidx accepted a chain to an untrusted root: exit %v\n%s", err, out)
		}
		t.Logf("secsipidx: %v: %s", err, strings.TrimSpace(out))
	})
	t.Run("signature altered", func(t *testing.T) {
		tok, params, _ := strings.Cut(identity, ";")
		i := strings.LastIndexByte(tok, '.') + 10
		c := byte('A')
		if tok[i] == 'A' {
			c = 'B'
		}
		forged := tok[:i] + string(c) + tok[i+1:] + ";" + params
		out, err := check(forged, p.rootPEM)
		if err == nil || !strings.Contains(out, "not-ok") {
			t.Errorf("secsipidx accepted an altered signature: exit %v\n%s", err, out)
		}
		t.Logf("secsipidx: %v: %s", err, strings.TrimSpace(out))
	})
	t.Run("stale iat", func(t *testing.T) {
		old, err := signer.Sign(stirCaller, stirCallee, stir.AttestFull, "", time.Now().Add(-2*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		out, err := check(old, p.rootPEM)
		if err == nil || !strings.Contains(out, "not-ok") {
			t.Errorf("secsipidx accepted a two-minute-old PASSporT with -expire 60: exit %v\n%s", err, out)
		}
		t.Logf("secsipidx: %v: %s", err, strings.TrimSpace(out))
	})
}

func b64url(t *testing.T, s string) string {
	t.Helper()
	for len(s)%4 != 0 {
		s += "="
	}
	b, err := base64URL.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func b64urlEncode(s string) string {
	return strings.TrimRight(base64URL.EncodeToString([]byte(s)), "=")
}

// base64URL is the alphabet of JWS segments (RFC 7515 §2).
var base64URL = base64.URLEncoding
