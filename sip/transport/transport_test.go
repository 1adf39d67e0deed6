package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// failsafe bounds every wait in these tests; it is a guard against hangs,
// never a measured threshold.
const failsafe = 10 * time.Second

// sink is a Handler that queues packets for the test.
type sink chan *Packet

func newSink() sink { return make(sink, 1000) }

func (s sink) HandlePacket(p *Packet) { s <- p }

func (s sink) next(t *testing.T) *Packet {
	t.Helper()
	select {
	case p := <-s:
		return p
	case <-time.After(failsafe):
		t.Fatal("no packet arrived")
		return nil
	}
}

// family is an IP family under test.
type family struct {
	name string
	host string // loopback literal
}

func families(t *testing.T) []family {
	fs := []family{{"IPv4", "127.0.0.1"}}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		ln.Close()
		fs = append(fs, family{"IPv6", "::1"})
	} else {
		t.Logf("IPv6 loopback unavailable, IPv6 cases skipped: %v", err)
	}
	return fs
}

// testTLS returns a server config with a fresh self-signed certificate for
// the loopback addresses and a client config trusting it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hlas test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost", "sip.example.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
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
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client
}

// newManager returns a Manager closed when the test ends.
func newManager(t *testing.T, cfg Config, h Handler) *Manager {
	t.Helper()
	m := New(cfg, h)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func listen(t *testing.T, m *Manager, proto, host string) netip.AddrPort {
	t.Helper()
	a, err := m.Listen(proto, net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	return addrPortOf(a)
}

// dialClient opens a plain client connection to a listener.
func dialClient(t *testing.T, proto string, addr netip.AddrPort, client *tls.Config) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: failsafe}
	var (
		c   net.Conn
		err error
	)
	if proto == TLS {
		c, err = (&tls.Dialer{NetDialer: &d, Config: client}).Dial("tcp", addr.String())
	} else {
		c, err = d.Dial("tcp", addr.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(failsafe))
	return c
}

// readMessage reads one framed message from a client connection.
func readMessage(t *testing.T, r io.Reader) string {
	t.Helper()
	fr, err := newFramer(r, DefaultMaxMessageSize).next()
	if err != nil {
		t.Fatalf("reading a message: %v", err)
	}
	return string(fr.data)
}

// pingPong sends a CRLF keep-alive and expects the CRLF answer.
func pingPong(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "\r\n" {
		t.Fatalf("pong %q, %v", buf, err)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failsafe)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func protoStats(s Stats, proto string) ProtoStats {
	switch proto {
	case TCP:
		return s.TCP
	case TLS:
		return s.TLS
	}
	return s.UDP
}

func TestUDP(t *testing.T) {
	for _, fam := range families(t) {
		t.Run(fam.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{}, h)
			addr := listen(t, m, "udp", fam.host)
			client, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			_ = client.SetDeadline(time.Now().Add(failsafe))
			clientAddr := addrPortOf(client.LocalAddr())

			// RFC 5626 §3.5.1 keep-alive and an empty datagram: no packet.
			for _, d := range []string{"\r\n\r\n", "", "\r\n", options0} {
				if _, err := client.Write([]byte(d)); err != nil {
					t.Fatal(err)
				}
			}
			p := h.next(t)
			if string(p.Data) != options0 || p.Proto != UDP || p.Conn != nil || p.Remote != clientAddr || p.Local != addr {
				t.Fatalf("packet %+v, want the OPTIONS from %s to %s", p, clientAddr, addr)
			}

			// Replies from the listener, by local address and by family.
			buf := make([]byte, maxDatagram)
			for _, local := range []netip.AddrPort{p.Local, {}} {
				if err := m.WriteTo("udp", local, p.Remote, []byte("SIP/2.0 200 OK\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				n, from, err := client.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != "SIP/2.0 200 OK\r\n\r\n" || unmap(from) != addr {
					t.Fatalf("reply %q from %s, %v", buf[:n], from, err)
				}
			}
			s := m.Stats().UDP
			if s.PacketsIn != 1 || s.PacketsOut != 2 || s.Keepalives != 2 || s.BytesIn != uint64(len(options0)+6) {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestUDPNoListener(t *testing.T) {
	m := newManager(t, Config{}, nil)
	listen(t, m, "udp", "127.0.0.1")
	tests := []struct {
		name          string
		local, remote netip.AddrPort
	}{
		{"no IPv6 socket", netip.AddrPort{}, netip.MustParseAddrPort("[::1]:5060")},
		{"no socket on that local address", netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:5060")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := m.WriteTo("udp", tc.local, tc.remote, []byte("x")); !errors.Is(err, ErrNoListener) {
				t.Fatalf("error %v, want ErrNoListener", err)
			}
		})
	}
}

// TestStreamReplyUsesPeerConnection covers RFC 3261 §18.2.2: a response
// goes back over the connection the request came in on, without a dial.
func TestStreamReplyUsesPeerConnection(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	for _, proto := range []string{TCP, TLS} {
		for _, fam := range families(t) {
			t.Run(proto+"/"+fam.name, func(t *testing.T) {
				h := newSink()
				m := newManager(t, Config{TLSConfig: serverTLS}, h)
				addr := listen(t, m, strings.ToLower(proto), fam.host)
				client := dialClient(t, proto, addr, clientTLS)
				clientAddr := addrPortOf(client.LocalAddr())

				pingPong(t, client)
				if _, err := client.Write([]byte(invite10 + options0)); err != nil {
					t.Fatal(err)
				}
				p1, p2 := h.next(t), h.next(t)
				if string(p1.Data) != invite10 || string(p2.Data) != options0 {
					t.Fatalf("got %q, %q", p1.Data, p2.Data)
				}
				if p1.Proto != proto || p1.Remote != clientAddr || p1.Local != addr || p1.Conn == nil || p2.Conn != p1.Conn {
					t.Fatalf("packet %+v from %s", p1, clientAddr)
				}
				if c := m.Lookup(proto, p1.Remote); c != p1.Conn {
					t.Fatalf("Lookup = %p, want %p", c, p1.Conn)
				}
				if p1.Conn.Proto() != proto || p1.Conn.RemoteAddr() != clientAddr || p1.Conn.LocalAddr() != addr {
					t.Fatalf("conn %s %s %s", p1.Conn.Proto(), p1.Conn.LocalAddr(), p1.Conn.RemoteAddr())
				}
				if _, ok := p1.Conn.TLSConnectionState(); ok != (proto == TLS) {
					t.Fatalf("TLSConnectionState ok = %v", ok)
				}

				if err := m.WriteTo(proto, p1.Local, p1.Remote, []byte(options0)); err != nil {
					t.Fatal(err)
				}
				if got := readMessage(t, client); got != options0 {
					t.Fatalf("reply %q", got)
				}
				s := protoStats(m.Stats(), proto)
				if s.ConnsDialed != 0 || s.ConnsAccepted != 1 || s.ConnsOpen != 1 || s.PacketsIn != 2 || s.PacketsOut != 1 || s.Keepalives != 1 {
					t.Fatalf("stats %+v", s)
				}
			})
		}
	}
}

// TestDialAndReuse: a Manager dials a peer once, the peer answers over
// that connection, and later messages in both directions reuse it.
func TestDialAndReuse(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	for _, proto := range []string{TCP, TLS} {
		for _, fam := range families(t) {
			t.Run(proto+"/"+fam.name, func(t *testing.T) {
				ha, hb := newSink(), newSink()
				a := newManager(t, Config{TLSClientConfig: clientTLS}, ha)
				b := newManager(t, Config{TLSConfig: serverTLS}, hb)
				bAddr := listen(t, b, proto, fam.host)

				// Concurrent first messages share one dial.
				const n = 8
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for i := range n {
					wg.Go(func() {
						errs <- a.WriteTo(proto, netip.AddrPort{}, bAddr, []byte(hdr(fmt.Sprint(i), "l: 1")))
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				var p *Packet
				for range n {
					q := hb.next(t)
					if p != nil && q.Conn != p.Conn {
						t.Fatal("messages arrived on different connections")
					}
					p = q
				}

				// b answers over the connection a opened.
				if err := b.WriteTo(proto, p.Local, p.Remote, []byte(options0)); err != nil {
					t.Fatal(err)
				}
				r := ha.next(t)
				aConn := a.Lookup(proto, bAddr)
				if string(r.Data) != options0 || r.Conn == nil || r.Conn != aConn || r.Remote != bAddr {
					t.Fatalf("response %+v, conn %p", r, aConn)
				}
				// And a's next request reuses it too.
				if err := a.WriteTo(proto, netip.AddrPort{}, bAddr, []byte(invite10)); err != nil {
					t.Fatal(err)
				}
				if q := hb.next(t); q.Conn != p.Conn || string(q.Data) != invite10 {
					t.Fatalf("second request %+v", q)
				}
				sa, sb := protoStats(a.Stats(), proto), protoStats(b.Stats(), proto)
				if sa.ConnsDialed != 1 || sa.ConnsOpen != 1 || sb.ConnsDialed != 0 || sb.ConnsAccepted != 1 {
					t.Fatalf("stats a %+v, b %+v", sa, sb)
				}
			})
		}
	}
}

func TestDialTLSServerName(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	hb := newSink()
	a := newManager(t, Config{TLSClientConfig: clientTLS}, nil)
	b := newManager(t, Config{TLSConfig: serverTLS}, hb)
	bAddr := listen(t, b, TLS, "127.0.0.1")
	tests := []struct {
		name, serverName string
		ok               bool
	}{
		{"name in the certificate", "sip.example.test", true},
		{"name not in the certificate", "other.example.test", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Dial(context.Background(), TLS, netip.AddrPort{}, bAddr, tc.serverName)
			if (err == nil) != tc.ok {
				t.Fatalf("Dial error %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				c.Close()
				<-c.Done()
			}
		})
	}
	if s := a.Stats().TLS; s.DialErrors != 1 || s.ConnsDialed != 1 || s.ConnsOpen != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := addrPortOf(ln.Addr())
	ln.Close()
	m := newManager(t, Config{}, nil)
	if err := m.WriteTo("tcp", netip.AddrPort{}, dead, []byte(options0)); err == nil {
		t.Fatal("WriteTo a closed port succeeded")
	}
	if s := m.Stats().TCP; s.DialErrors != 1 || s.ConnsOpen != 0 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := m.Dial(context.Background(), UDP, netip.AddrPort{}, dead, ""); err == nil {
		t.Fatal("Dial over UDP succeeded")
	}
}

func TestIdleTimeout(t *testing.T) {
	for _, proto := range []string{TCP, TLS} {
		t.Run(proto, func(t *testing.T) {
			serverTLS, clientTLS := testTLS(t)
			h := newSink()
			m := newManager(t, Config{IdleTimeout: 50 * time.Millisecond, TLSConfig: serverTLS}, h)
			addr := listen(t, m, proto, "127.0.0.1")
			client := dialClient(t, proto, addr, clientTLS)
			if _, err := client.Write([]byte(options0)); err != nil {
				t.Fatal(err)
			}
			p := h.next(t)
			// Nothing more is sent: the server closes the connection.
			if n, err := client.Read(make([]byte, 1)); err == nil {
				t.Fatalf("read %d bytes, want the connection closed", n)
			}
			<-p.Conn.Done()
			waitFor(t, "the table entry to go", func() bool { return m.Lookup(proto, p.Remote) == nil })
			if s := protoStats(m.Stats(), proto); s.ConnsIdleClosed != 1 {
				t.Fatalf("stats %+v", s)
			}
			waitFor(t, "the open count to drop", func() bool { return protoStats(m.Stats(), proto).ConnsOpen == 0 })
		})
	}
}

func TestConnectionLimits(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"MaxConnsPerSource", Config{MaxConnsPerSource: 2}},
		{"MaxConns", Config{MaxConns: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, tc.cfg, nil)
			addr := listen(t, m, TCP, "127.0.0.1")
			c1 := dialClient(t, TCP, addr, nil)
			pingPong(t, c1)
			c2 := dialClient(t, TCP, addr, nil)
			pingPong(t, c2)

			// The third is closed at once.
			c3 := dialClient(t, TCP, addr, nil)
			if n, err := c3.Read(make([]byte, 1)); err == nil {
				t.Fatalf("read %d bytes on a connection over the limit", n)
			}
			if s := m.Stats().TCP; s.ConnsRejected != 1 || s.ConnsAccepted != 2 || s.ConnsOpen != 2 {
				t.Fatalf("stats %+v", s)
			}
			// A slot freed is a slot usable.
			c1.Close()
			waitFor(t, "a slot to free", func() bool { return m.Stats().TCP.ConnsOpen == 1 })
			c4 := dialClient(t, TCP, addr, nil)
			pingPong(t, c4)
			pingPong(t, c2)
		})
	}
}

func TestMaxConnsBoundsDials(t *testing.T) {
	b := newManager(t, Config{}, nil)
	addr1 := listen(t, b, TCP, "127.0.0.1")
	addr2 := listen(t, b, TCP, "127.0.0.1")
	a := newManager(t, Config{MaxConns: 1}, nil)
	if err := a.WriteTo(TCP, netip.AddrPort{}, addr1, []byte(options0)); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteTo(TCP, netip.AddrPort{}, addr2, []byte(options0)); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("error %v, want ErrTooManyConns", err)
	}
}

// TestUnusableMessage: an oversize or badly framed message reaches the
// handler once with its header section, the reply goes out on its
// connection, and the connection closes.
func TestUnusableMessage(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		oversize  bool
		reason    string
		statField func(ProtoStats) uint64
	}{
		{
			name:      "RFC 3261 21.5.14 oversize",
			in:        hdr(strings.Repeat("x", 3000), "Call-ID: big", "Content-Length: 100000"),
			oversize:  true,
			statField: func(s ProtoStats) uint64 { return s.Oversize },
		},
		{
			name:      "RFC 4475 3.1.2.7 negative Content-Length",
			in:        hdr(strings.Repeat("x", 30), "Call-ID: neg", "Content-Length: -999"),
			reason:    reasonNegative,
			statField: func(s ProtoStats) uint64 { return s.BadFraming },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{MaxMessageSize: 1024}, h)
			addr := listen(t, m, TCP, "127.0.0.1")
			client := dialClient(t, TCP, addr, nil)
			if _, err := client.Write([]byte(options0 + tc.in)); err != nil {
				t.Fatal(err)
			}
			if p := h.next(t); string(p.Data) != options0 || p.Oversize || p.BadFraming != "" {
				t.Fatalf("first packet %+v", p)
			}
			p := h.next(t)
			if p.Oversize != tc.oversize || p.BadFraming != tc.reason || string(p.Data) != headerOf(tc.in) {
				t.Fatalf("packet oversize=%v bad=%q data=%q", p.Oversize, p.BadFraming, p.Data)
			}
			if m.Lookup(TCP, p.Remote) != nil {
				t.Fatal("connection still in the table")
			}
			const reply = "SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n"
			if err := p.Conn.Write([]byte(reply)); err != nil {
				t.Fatal(err)
			}
			if got := readMessage(t, client); got != reply {
				t.Fatalf("reply %q", got)
			}
			if n, err := client.Read(make([]byte, 1)); err == nil {
				t.Fatalf("read %d more bytes, want the connection closed", n)
			}
			client.Close()
			<-p.Conn.Done()
			if got := tc.statField(m.Stats().TCP); got != 1 {
				t.Fatalf("counter %d, want 1", got)
			}
		})
	}
}

// TestUnusableMessageWithoutReply: the connection closes after
// WriteTimeout when the server never answers.
func TestUnusableMessageWithoutReply(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{WriteTimeout: 20 * time.Millisecond}, h)
	addr := listen(t, m, TCP, "127.0.0.1")
	client := dialClient(t, TCP, addr, nil)
	if _, err := client.Write([]byte(hdr("", "Content-Length: abc"))); err != nil {
		t.Fatal(err)
	}
	p := h.next(t)
	<-p.Conn.Done()
	if err := p.Conn.Write([]byte(options0)); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Write on a closed conn: %v", err)
	}
}

// TestSlowReader: a peer that stops reading makes writes to it fail after
// WriteTimeout and close its connection, and does not hold up others.
func TestSlowReader(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{WriteTimeout: 50 * time.Millisecond}, h)
	addr := listen(t, m, TCP, "127.0.0.1")
	slow := dialClient(t, TCP, addr, nil)
	if _, err := slow.Write([]byte(options0)); err != nil {
		t.Fatal(err)
	}
	ps := h.next(t)
	fast := dialClient(t, TCP, addr, nil)
	if _, err := fast.Write([]byte(options0)); err != nil {
		t.Fatal(err)
	}
	pf := h.next(t)

	writeErr := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("x"), 1<<16)
		for range 100000 {
			if err := m.WriteTo(TCP, netip.AddrPort{}, ps.Remote, chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	for range 5 {
		if err := m.WriteTo(TCP, netip.AddrPort{}, pf.Remote, []byte(options0)); err != nil {
			t.Fatal(err)
		}
		if got := readMessage(t, fast); got != options0 {
			t.Fatalf("fast peer read %q", got)
		}
	}
	select {
	case err := <-writeErr:
		if err == nil {
			t.Fatal("writes to a peer that never reads kept succeeding")
		}
	case <-time.After(failsafe):
		t.Fatal("a write to a peer that never reads blocked")
	}
	<-ps.Conn.Done()
	if s := m.Stats().TCP; s.WriteErrors != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The connection left the table, so the next write dials afresh.
	if c := m.Lookup(TCP, ps.Remote); c != nil {
		t.Fatal("closed connection still in the table")
	}
}

func TestAlias(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{}, h)
	addr := listen(t, m, "tcp", "127.0.0.1")
	client := dialClient(t, TCP, addr, nil)
	if _, err := client.Write([]byte(options0)); err != nil {
		t.Fatal(err)
	}
	p := h.next(t)
	// RFC 5923: the Via sent-by names the peer's listening address.
	sentBy := netip.MustParseAddrPort("127.0.0.1:5060")
	m.Alias("tcp", sentBy, p.Conn)
	if m.Lookup("TCP", sentBy) != p.Conn || m.Lookup(TLS, sentBy) != nil {
		t.Fatal("alias not found under its protocol only")
	}
	if err := m.WriteTo(TCP, netip.AddrPort{}, sentBy, []byte(invite10)); err != nil {
		t.Fatal(err)
	}
	if got := readMessage(t, client); got != invite10 {
		t.Fatalf("read %q", got)
	}
	client.Close()
	<-p.Conn.Done()
	waitFor(t, "aliases to go", func() bool { return m.Lookup(TCP, sentBy) == nil && m.Lookup(TCP, p.Remote) == nil })
	m.Alias(TCP, sentBy, p.Conn) // a closed conn takes no alias
	if m.Lookup(TCP, sentBy) != nil {
		t.Fatal("closed connection took an alias")
	}
}

// TestDualStackSamePort: IPv4 and IPv6 listeners share a port number and
// report their peers' addresses in their own family.
func TestDualStackSamePort(t *testing.T) {
	if len(families(t)) < 2 {
		t.Skip("no IPv6")
	}
	for _, proto := range []string{UDP, TCP} {
		t.Run(proto, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{}, h)
			var port uint16
			for try := 0; ; try++ {
				v4 := listen(t, m, proto, "0.0.0.0")
				if _, err := m.Listen(proto, fmt.Sprintf("[::]:%d", v4.Port())); err == nil {
					port = v4.Port()
					break
				} else if try == 5 {
					t.Fatalf("no port free on both families: %v", err)
				}
			}
			for _, fam := range families(t) {
				to := netip.AddrPortFrom(netip.MustParseAddr(fam.host), port)
				c, err := net.Dial(strings.ToLower(proto), to.String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write([]byte(options0)); err != nil {
					t.Fatal(err)
				}
				p := h.next(t)
				if p.Remote != addrPortOf(c.LocalAddr()) || p.Remote.Addr().Is4() != (fam.name == "IPv4") {
					t.Fatalf("remote %s, want %s", p.Remote, c.LocalAddr())
				}
			}
		})
	}
}

func TestTLSHandshakeFailure(t *testing.T) {
	serverTLS, _ := testTLS(t)
	m := newManager(t, Config{TLSConfig: serverTLS}, nil)
	addr := listen(t, m, TLS, "127.0.0.1")
	c := dialClient(t, TCP, addr, nil)
	if _, err := c.Write([]byte(options0)); err != nil { // not a ClientHello
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, c)
	waitFor(t, "the handshake error", func() bool { return m.Stats().TLS.HandshakeErrors == 1 })
	waitFor(t, "the connection to close", func() bool { return m.Stats().TLS.ConnsOpen == 0 })
}

func TestListenErrors(t *testing.T) {
	m := newManager(t, Config{}, nil)
	tests := []struct{ name, proto, addr string }{
		{"unknown protocol", "sctp", "127.0.0.1:0"},
		{"TLS without a certificate", "tls", "127.0.0.1:0"},
		{"address without a port", "udp", "127.0.0.1"},
		{"address not local", "tcp", "192.0.2.1:0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a, err := m.Listen(tc.proto, tc.addr); err == nil {
				t.Fatalf("Listen(%q, %q) = %v, want an error", tc.proto, tc.addr, a)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // in the error; empty for a valid config
	}{
		{"zero is valid", Config{}, ""},
		{"negative MaxMessageSize", Config{MaxMessageSize: -1}, "MaxMessageSize"},
		{"negative IdleTimeout", Config{IdleTimeout: -1}, "IdleTimeout"},
		{"negative MaxConns", Config{MaxConns: -1}, "MaxConns"},
		{"negative MaxConnsPerSource", Config{MaxConnsPerSource: -1}, "MaxConnsPerSource"},
		{"negative WriteTimeout", Config{WriteTimeout: -1}, "WriteTimeout"},
		{"negative DialTimeout", Config{DialTimeout: -1}, "DialTimeout"},
		{"negative ReadBuffer", Config{ReadBuffer: -1}, "ReadBuffer"},
		{"negative ReadBatch", Config{ReadBatch: -1}, "ReadBatch"},
		{"ReadBatch over recvmmsg's limit", Config{ReadBatch: 1025}, "ReadBatch"},
		{"largest ReadBatch", Config{ReadBatch: 1024}, ""},
		{"negative WSCloseWait", Config{WSCloseWait: -1}, "WSCloseWait"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.field == "") || (err != nil && !strings.Contains(err.Error(), tc.field+" ")) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.field)
			}
		})
	}
	d := Config{}.withDefaults()
	if d.MaxMessageSize != 65536 || d.IdleTimeout != 5*time.Minute || d.MaxConns != 10000 ||
		d.MaxConnsPerSource != 64 || d.WriteTimeout != 5*time.Second || d.DialTimeout != 5*time.Second || d.Logger == nil ||
		d.ReadBuffer != 4<<20 || d.ReadBatch != 32 || d.WSCloseWait != time.Second {
		t.Fatalf("defaults %+v", d)
	}
}

func TestMetrics(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{}, h)
	addr := listen(t, m, UDP, "127.0.0.1")
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(options0)); err != nil {
		t.Fatal(err)
	}
	h.next(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	const want = `
# HELP hlas_transport_packets_received_total SIP messages received and handed on.
# TYPE hlas_transport_packets_received_total counter
hlas_transport_packets_received_total{proto="TCP"} 0
hlas_transport_packets_received_total{proto="TLS"} 0
hlas_transport_packets_received_total{proto="UDP"} 1
hlas_transport_packets_received_total{proto="WS"} 0
hlas_transport_packets_received_total{proto="WSS"} 0
# HELP hlas_transport_connections_open Stream connections open.
# TYPE hlas_transport_connections_open gauge
hlas_transport_connections_open{proto="TCP"} 0
hlas_transport_connections_open{proto="TLS"} 0
hlas_transport_connections_open{proto="WS"} 0
hlas_transport_connections_open{proto="WSS"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"hlas_transport_packets_received_total", "hlas_transport_connections_open"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m); n != 7*5+10*4+1 { // 7 metrics for every protocol, 10 for the four streams, reads for UDP
		t.Fatalf("%d series", n)
	}
}

// TestCloseWaits: Close ends every goroutine, with listeners, accepted,
// dialed and half-handshaken connections open.
func TestCloseWaits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	serverTLS, clientTLS := testTLS(t)
	hb := newSink()
	a := New(Config{TLSClientConfig: clientTLS}, nil)
	b := New(Config{TLSConfig: serverTLS}, hb)
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, fam := range families(t) {
		for _, proto := range []string{UDP, TCP, TLS} {
			addr := listen(t, b, proto, fam.host)
			if proto == UDP {
				continue
			}
			if err := a.WriteTo(proto, netip.AddrPort{}, addr, []byte(options0)); err != nil {
				t.Fatal(err)
			}
			hb.next(t)
			// A connection that never starts its TLS handshake.
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
		}
	}
	waitFor(t, "all connections", func() bool {
		s := b.Stats()
		return s.TCP.ConnsAccepted == uint64(2*len(families(t))) && s.TLS.ConnsAccepted == uint64(2*len(families(t)))
	})
	for _, m := range []*Manager{a, b} {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := m.Listen(TCP, "127.0.0.1:0"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Listen after Close: %v", err)
		}
		if err := m.WriteTo(TCP, netip.AddrPort{}, netip.MustParseAddrPort("127.0.0.1:1"), nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("WriteTo after Close: %v", err)
		}
		if s := m.Stats(); s.TCP.ConnsOpen != 0 || s.TLS.ConnsOpen != 0 {
			t.Fatalf("open after Close: %+v", s)
		}
	}
}

// TestDualStackSocketUnmaps: a listener on an empty host takes IPv4 peers
// on an IPv6 socket; they are reported, and answered, as IPv4.
func TestDualStackSocketUnmaps(t *testing.T) {
	if len(families(t)) < 2 {
		t.Skip("no IPv6")
	}
	for _, proto := range []string{UDP, TCP} {
		t.Run(proto, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{}, h)
			addr := listen(t, m, proto, "")
			c, err := net.Dial(strings.ToLower(proto), fmt.Sprintf("127.0.0.1:%d", addr.Port()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(failsafe))
			if _, err := c.Write([]byte(options0)); err != nil {
				t.Fatal(err)
			}
			p := h.next(t)
			if !p.Remote.Addr().Is4() || p.Remote != addrPortOf(c.LocalAddr()) {
				t.Fatalf("remote %s, want %s", p.Remote, c.LocalAddr())
			}
			if err := m.WriteTo(proto, p.Local, p.Remote, []byte(invite10)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1024)
			n, err := io.ReadAtLeast(c, buf, len(invite10))
			if err != nil || string(buf[:n]) != invite10 {
				t.Fatalf("reply %q, %v", buf[:n], err)
			}
		})
	}
}

// BenchmarkTCPLoopback measures messages from a pipelining client through
// a Manager's TCP reader to its Handler.
func BenchmarkTCPLoopback(b *testing.B) {
	var (
		mu    sync.Mutex
		count int
		want  int
		done  = make(chan struct{}, 1)
	)
	h := HandlerFunc(func(*Packet) {
		mu.Lock()
		count++
		if count == want {
			done <- struct{}{}
		}
		mu.Unlock()
	})
	m := New(Config{}, h)
	defer m.Close()
	a, err := m.Listen(TCP, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", a.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	batch := []byte(strings.Repeat(benchInvite, 50))
	b.SetBytes(int64(len(benchInvite)))
	b.ReportAllocs()
	b.ResetTimer()
	mu.Lock()
	count, want = 0, (b.N+49)/50*50
	mu.Unlock()
	for i := 0; i < b.N; i += 50 {
		if _, err := c.Write(batch); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatal("messages lost")
	}
}
