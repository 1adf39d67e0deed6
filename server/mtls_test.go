package server

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/proxy"
)

// testClientCerts makes a CA of its own and issues a client certificate
// for each of names; it returns the CA's PEM file and the certificates.
func testClientCerts(t *testing.T, names ...string) (caFile string, certs []tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "carrier CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	for i, name := range names {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(11 + i)), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	}
	caFile = filepath.Join(t.TempDir(), "client-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, certs
}

// Mutual TLS as a way to trust a peer: with a client certificate that
// names a routing.trusted "cert:" rule, a request claiming one of our
// users passes without a challenge; the same request over TLS without a
// certificate, or with one naming another host, is challenged.
func TestTrustByClientCertificate(t *testing.T) {
	certFile, keyFile := writeCert(t, t.TempDir())
	caFile, certs := testClientCerts(t, "gw.carrier.test", "pbx.customer.test")
	gw, stranger := certs[0], certs[1]
	_, forged := testClientCerts(t, "gw.carrier.test") // the right name from another CA
	other := forged[0]
	srv := startServer(t, Config{
		Listen: []string{"tls:127.0.0.1:0"}, TLSCert: certFile, TLSKey: keyFile, TLSClientCA: caFile,
		Domains: []string{"example.test"},
		Routing: proxy.Config{Trusted: []string{"cert:gw.carrier.test"}},
	})
	to := srv.addr(t, "TLS", false)
	message := request("MESSAGE", "sip:nobody@example.test", "gw.carrier.test:5061", "")
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		want  int
	}{
		{"trusted certificate: no challenge, routed (404: no such user)", []tls.Certificate{gw}, 404},
		{"no certificate: challenged", nil, 407},
		{"a certificate of the CA naming no rule: challenged", []tls.Certificate{stranger}, 407},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", to.String(), &tls.Config{InsecureSkipVerify: true, Certificates: tc.certs})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if res := streamExchange(t, conn, bufio.NewReader(conn), message); res.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
	// A certificate the server's CA did not issue fails the handshake.
	conn, err := tls.Dial("tcp", to.String(), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{other}})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Write([]byte(message))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
}
