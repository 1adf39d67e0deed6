package stir

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/stir/stirtest"
)

// fakeClock is an injectable clock the tests move by hand. It starts at
// the wall clock's now because stirtest's certificates are valid around
// the real time (secsipidx and other outside verifiers check them so).
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Now().UTC().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// leafWithTNAuth issues a signing certificate whose TNAuthList is l, for
// the entries stirtest.LeafOptions has no field for (number ranges). The
// extension is encoded by l.Marshal, so the encoder is in the loop too.
func leafWithTNAuth(t testing.TB, issuer *stirtest.CA, l TNAuthList) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	ext, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:    serial.Add(serial, big.NewInt(1)),
		Subject:         pkix.Name{CommonName: "SHAKEN numbers"},
		KeyUsage:        x509.KeyUsageDigitalSignature,
		NotBefore:       now.Add(-time.Hour),
		NotAfter:        now.Add(24 * time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: OIDTNAuthList, Value: ext}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, &k.PublicKey, issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// x5uServer is an HTTPS server of certificate files that counts the
// requests for each path. Its TLS certificate is httptest's own, trusted
// only by srv.Client(): the HTTPS trust and the STI trust (Roots) differ.
type x5uServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	files   map[string]http.HandlerFunc
	fetches map[string]int
}

func newX5UServer(t testing.TB) *x5uServer {
	s := &x5uServer{files: map[string]http.HandlerFunc{}, fetches: map[string]int{}}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.fetches[r.URL.Path]++
		h := s.files[r.URL.Path]
		s.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// serve publishes body at path and returns its URL.
func (s *x5uServer) serve(path string, body []byte) string {
	return s.handle(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		_, _ = w.Write(body)
	})
}

func (s *x5uServer) handle(path string, h http.HandlerFunc) string {
	s.mu.Lock()
	s.files[path] = h
	s.mu.Unlock()
	return s.srv.URL + path
}

func (s *x5uServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[path]
}

// fixture is a complete STI PKI: root, intermediate, a SHAKEN leaf with
// SPC 709J served at x5u, a signer for it and a verifier trusting the root.
type fixture struct {
	root, inter *stirtest.CA
	leaf        *x509.Certificate
	leafKey     *ecdsa.PrivateKey
	srv         *x5uServer
	x5u         string
	signer      *Signer
	clock       *fakeClock
	v           *Verifier
}

const (
	alice = "12025550100" // calling
	bob   = "12025550199" // called
)

func newFixture(t testing.TB, mod func(*VerifierConfig)) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), srv: newX5UServer(t)}
	f.root = stirtest.NewCA(t, "STI-PA test root")
	f.inter = f.root.Intermediate(t, "STI-CA test intermediate")
	f.leaf, f.leafKey = f.inter.Leaf(t, stirtest.LeafOptions{SPC: "709J"})
	f.x5u = f.srv.serve("/cert.pem", stirtest.PEMChain(f.leaf, f.inter.Cert))
	f.signer = f.newSigner(t, f.leafKey, f.x5u)
	cfg := VerifierConfig{Roots: stirtest.Pool(f.root), Client: f.srv.srv.Client(), Now: f.clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

func (f *fixture) newSigner(t testing.TB, k *ecdsa.PrivateKey, x5u string) *Signer {
	t.Helper()
	s, err := NewSigner(stirtest.KeyPEM(t, k), x5u)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sign signs a call from alice to bob now.
func (f *fixture) sign(t testing.TB) string {
	t.Helper()
	return f.signWith(t, f.signer, f.clock.Now())
}

func (f *fixture) signWith(t testing.TB, s *Signer, iat time.Time) string {
	t.Helper()
	h, err := s.Sign("+"+alice, "tel:+"+bob, AttestFull, "4437c7eb-8f7a-4f0e-a863-f53a0e60251a", iat)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
