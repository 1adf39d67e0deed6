package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs a leaf certificate for a TLS server or client.
func (ca *testCA) issue(t *testing.T, cn string, dns []string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestPeerNamesMutualTLS: with VerifyClientCertIfGiven, a client
// certificate from the trusted CA names the peer, a client without one is
// served without names, and one from another CA fails the handshake. A
// certificate that was only requested, not verified, names no one.
func TestPeerNamesMutualTLS(t *testing.T) {
	ca, other := newTestCA(t, "trunk CA"), newTestCA(t, "someone else's CA")
	serverCert := ca.issue(t, "sip.example.test", []string{"sip.example.test"}, x509.ExtKeyUsageServerAuth)
	gateway := ca.issue(t, "gateway-1", []string{"gw.example.test", "GW2.example.test"}, x509.ExtKeyUsageClientAuth)
	cnIsSAN := ca.issue(t, "gw.example.test", []string{"gw.example.test"}, x509.ExtKeyUsageClientAuth)
	cnOnly := ca.issue(t, "gateway-2", nil, x509.ExtKeyUsageClientAuth)
	impostor := other.issue(t, "gateway-1", []string{"gw.example.test"}, x509.ExtKeyUsageClientAuth)

	tests := []struct {
		name       string
		clientAuth tls.ClientAuthType
		cert       *tls.Certificate
		want       []string
		refused    bool
	}{
		{"client certificate from the trusted CA", tls.VerifyClientCertIfGiven, &gateway, []string{"gw.example.test", "GW2.example.test", "gateway-1"}, false},
		{"common name repeating a SAN", tls.VerifyClientCertIfGiven, &cnIsSAN, []string{"gw.example.test"}, false},
		{"common name only", tls.VerifyClientCertIfGiven, &cnOnly, []string{"gateway-2"}, false},
		{"no client certificate", tls.VerifyClientCertIfGiven, nil, nil, false},
		{"client certificate from another CA", tls.VerifyClientCertIfGiven, &impostor, nil, true},
		{"certificate requested, not verified", tls.RequestClientCert, &impostor, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{TLSConfig: &tls.Config{
				Certificates: []tls.Certificate{serverCert},
				ClientAuth:   tc.clientAuth,
				ClientCAs:    ca.pool,
				MinVersion:   tls.VersionTLS12,
			}}, h)
			addr := listen(t, m, TLS, "127.0.0.1")
			client := &tls.Config{RootCAs: ca.pool, ServerName: "sip.example.test", MinVersion: tls.VersionTLS12}
			if tc.cert != nil {
				// Sent whatever CAs the server names: a client picking by
				// them would keep an impostor certificate to itself.
				client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tc.cert, nil }
			}
			c := dialClient(t, TLS, addr, client)
			// Under TLS 1.3 the server judges the client certificate after
			// the client's side of the handshake is done: a refusal shows
			// on the connection afterwards.
			_, _ = c.Write([]byte(options0))
			if tc.refused {
				if n, _ := io.Copy(io.Discard, c); n != 0 {
					t.Fatalf("read %d bytes from a refused connection", n)
				}
				waitFor(t, "the handshake error", func() bool { return m.Stats().TLS.HandshakeErrors == 1 })
				waitFor(t, "the close", func() bool { return m.Stats().TLS.ConnsOpen == 0 })
				select {
				case p := <-h:
					t.Fatalf("a packet from a refused client: %q", p.Data)
				default:
				}
				return
			}
			p := h.next(t)
			if string(p.Data) != options0 {
				t.Fatalf("packet %q", p.Data)
			}
			if got := p.Conn.PeerNames(); !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("PeerNames() = %q, want %q", got, tc.want)
			}
			if st, ok := p.Conn.TLSConnectionState(); !ok || (tc.cert != nil) != (len(st.PeerCertificates) == 1) {
				t.Fatalf("the client's certificate was not presented as the case needs: %d", len(st.PeerCertificates))
			}
			if n := testing.AllocsPerRun(10, func() { _ = p.Conn.PeerNames() }); n != 0 {
				t.Fatalf("PeerNames allocates %v times", n)
			}
			if s := m.Stats().TLS; s.HandshakeErrors != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestPeerNamesDialed: a dialed TLS connection names the server by its
// verified certificate; one whose certificate was not verified, and any
// TCP connection, name no one.
func TestPeerNamesDialed(t *testing.T) {
	ca := newTestCA(t, "trunk CA")
	serverCert := ca.issue(t, "proxy.example.test", []string{"proxy.example.test", "sip.example.test"}, x509.ExtKeyUsageServerAuth)
	server := newManager(t, Config{TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}}, newSink())
	tlsAddr := listen(t, server, TLS, "127.0.0.1")
	tcpAddr := listen(t, server, TCP, "127.0.0.1")

	tests := []struct {
		name   string
		proto  string
		addr   netip.AddrPort
		client *tls.Config
		want   []string
	}{
		{"verified server", TLS, tlsAddr, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}, []string{"proxy.example.test", "sip.example.test"}},
		{"server not verified", TLS, tlsAddr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil},
		{"TCP", TCP, tcpAddr, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, Config{TLSClientConfig: tc.client}, newSink())
			c, err := m.Dial(t.Context(), tc.proto, netip.AddrPort{}, tc.addr, "sip.example.test")
			if err != nil {
				t.Fatal(err)
			}
			if got := c.PeerNames(); !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("PeerNames() = %q, want %q", got, tc.want)
			}
		})
	}
}
