// Package stirtest builds STI (STIR/SHAKEN) test fixtures: a CA hierarchy
// issuing SHAKEN leaf certificates with a TNAuthList extension, PEM
// encodings, and an HTTPS server of certificate files (x5u) that counts its
// fetches.
//
// It is for tests only: no non-test code may import it. Every fixture is
// made per test (no package-level state), and every failure ends the test
// through t.Fatal.
package stirtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// oidTNAuthList is id-pe-TNAuthList (RFC 8226 §9). It is spelled out here
// rather than taken from package stir so that stir's own (internal) tests
// can import stirtest without an import cycle.
var oidTNAuthList = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 26}

// The TNEntry choices written by Leaf (RFC 8226 §9).
const (
	tagSPC = 0
	tagOne = 2
)

// defaultSPC is the service provider code a leaf carries when LeafOptions
// names neither an SPC nor telephone numbers.
const defaultSPC = "709J"

// CA is a certificate authority of a test STI PKI: the STI-PA's root or an
// STI-CA's intermediate.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed root CA with a P-256 key, valid from an hour
// ago to a day from now (wall clock: certificates must be valid where the
// code under test, or an external tool, checks them with the real time).
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	k := newKey(t)
	now := time.Now()
	c := issue(t, caTemplate(name, now), nil, k, k)
	return &CA{Cert: c, Key: k}
}

// Intermediate makes a CA certified by c, with the same validity as NewCA.
func (c *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	k := newKey(t)
	cert := issue(t, caTemplate(name, time.Now()), c, k, c.Key)
	return &CA{Cert: cert, Key: k}
}

func caTemplate(name string, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// LeafOptions shape a SHAKEN signing certificate. The zero value is a
// certificate for SPC 709J valid from an hour ago to a day from now.
type LeafOptions struct {
	// SPC is the service provider code in the TNAuthList. Default
	// "709J", unless TNs are given: then only the numbers are listed.
	SPC string
	// TNs are telephone numbers (RFC 8226 "one" entries) in the
	// TNAuthList, alone or after SPC. They are written as given, so a test
	// can issue a certificate with malformed numbers.
	TNs []string
	// NoTNAuthList omits the extension (SPC and TNs are then ignored).
	NoTNAuthList bool
	// Critical marks the TNAuthList extension critical.
	Critical bool
	// NotBefore and NotAfter bound the validity; each defaults on its own
	// to an hour ago and a day from now.
	NotBefore, NotAfter time.Time
}

// Leaf issues a signing certificate under c and returns it with its P-256
// key.
func (c *CA) Leaf(t testing.TB, o LeafOptions) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(24 * time.Hour)
	}
	if o.SPC == "" && len(o.TNs) == 0 {
		o.SPC = defaultSPC
	}
	name := "SHAKEN " + o.SPC
	if o.SPC == "" {
		name = "SHAKEN " + o.TNs[0]
	}
	k := newKey(t)
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: name},
		NotBefore: o.NotBefore,
		NotAfter:  o.NotAfter,
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	if !o.NoTNAuthList {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidTNAuthList, Critical: o.Critical, Value: tnAuthList(t, o.SPC, o.TNs)}}
	}
	return issue(t, tmpl, c, k, c.Key), k
}

// tnAuthList encodes a TNAuthList with explicitly tagged entries, as RFC
// 8226's module defines them: an SPC (if any), then the numbers.
func tnAuthList(t testing.TB, spc string, tns []string) []byte {
	t.Helper()
	var entries []asn1.RawValue
	add := func(tag int, s string) {
		inner, err := asn1.MarshalWithParams(s, "ia5")
		if err != nil {
			t.Fatalf("stirtest: TNAuthList entry %q: %v", s, err)
		}
		entries = append(entries, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: inner})
	}
	if spc != "" {
		add(tagSPC, spc)
	}
	for _, tn := range tns {
		add(tagOne, tn)
	}
	der, err := asn1.Marshal(entries)
	if err != nil {
		t.Fatalf("stirtest: TNAuthList: %v", err)
	}
	return der
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("stirtest: key: %v", err)
	}
	return k
}

// issue signs tmpl with signer, as parent's certificate (self-signed when
// parent is nil). Serial numbers are random, as RFC 5280 wants them unique
// per issuer and there is no counter to keep.
func issue(t testing.TB, tmpl *x509.Certificate, parent *CA, k, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("stirtest: serial: %v", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	p := tmpl
	if parent != nil {
		p = parent.Cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p, &k.PublicKey, signer)
	if err != nil {
		t.Fatalf("stirtest: certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("stirtest: certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return c
}

// PEMChain encodes certs as consecutive CERTIFICATE blocks, leaf first as
// an x5u resource lists them (application/pem-certificate-chain, RFC 8555
// §9.1).
func PEMChain(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		// Writing to a bytes.Buffer cannot fail.
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// KeyPEM encodes k as a PKCS#8 "PRIVATE KEY" block.
func KeyPEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatalf("stirtest: key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Pool is a certificate pool of the CAs' certificates, for trust anchors.
func Pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c.Cert)
	}
	return p
}

// X5UServer is an HTTPS server of certificate files that counts the
// requests for each path. Its TLS certificate is httptest's, trusted by
// Client and given as CertPEM: the HTTPS trust is separate from the STI
// trust (the CAs), as in production.
type X5UServer struct {
	// URL is the server's base, https://127.0.0.1:port, without a
	// trailing slash.
	URL string
	// Client trusts the server's TLS certificate.
	Client *http.Client
	// CertPEM is the server's TLS certificate, for a CA file of a client
	// that is not Client (an external tool, a fetch_ca setting).
	CertPEM []byte

	mu      sync.Mutex
	files   map[string][]byte
	fetches map[string]int
}

// NewX5UServer starts an X5UServer with no files; it is closed when the
// test ends.
func NewX5UServer(t testing.TB) *X5UServer {
	t.Helper()
	s := &X5UServer{files: map[string][]byte{}, fetches: map[string]int{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	s.Client = srv.Client()
	s.CertPEM = PEMChain(srv.Certificate())
	return s
}

func (s *X5UServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.fetches[r.URL.Path]++
	body, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	ct := "application/pkix-cert" // a single DER certificate
	if bytes.HasPrefix(body, []byte("-----BEGIN")) {
		ct = "application/pem-certificate-chain"
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(body)
}

// Set serves body at path (such as "/sti/709J.pem"), replacing what was
// there; the URL to sign with is s.URL+path. Paths never Set answer 404.
func (s *X5UServer) Set(path string, body []byte) {
	s.mu.Lock()
	s.files[path] = bytes.Clone(body)
	s.mu.Unlock()
}

// Fetches is how many requests for path the server has had, whether it
// answered them with a file or with 404.
func (s *X5UServer) Fetches(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[path]
}
