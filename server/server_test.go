package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

// startServer runs a server on loopback ports chosen by the kernel.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	}
	srv := newTestServer(t, cfg)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}

// newTestServer builds a server with New, in a temporary data directory
// and with testDNS unless cfg says otherwise, and closes it when the test
// ends.
func newTestServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if len(cfg.DNS.Servers) == 0 {
		cfg.DNS = testDNS(tb)
	}
	srv, err := New(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return srv
}

// wantDropped checks the count of messages dropped for reason.
func wantDropped(tb testing.TB, srv *Server, reason string, want float64) {
	tb.Helper()
	if got := testutil.ToFloat64(srv.met.dropped.WithLabelValues(reason)); got != want {
		tb.Errorf("dropped{%s} = %v, want %v", reason, got, want)
	}
}

// testDNS points the resolver at an in-process DNS server that knows no
// names (NXDOMAIN at once) and reads no hosts file, so that a foreign
// domain's lookup does not depend on the machine's resolver.
func testDNS(t testing.TB) resolve.Config {
	srv := resolvetest.Start(t, "invalid. 3600 IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 300")
	return resolve.Config{Servers: []string{srv.Addr}, HostsFile: resolve.HostsNone}
}

func (s *Server) addr(t *testing.T, proto string, v6 bool) netip.AddrPort {
	t.Helper()
	for _, a := range s.Addrs() {
		if a.Proto == proto && a.Addr.Addr().Is6() == v6 {
			return a.Addr
		}
	}
	t.Fatalf("no %s listener (v6=%v)", proto, v6)
	return netip.AddrPort{}
}

// request builds a request text; %s placeholders are filled by fmt: the
// Request-URI, the Via sent-by, and extra header lines.
func request(method, ruri, sentBy, extra string) string {
	return method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + sentBy + ";branch=z9hG4bK" + fmt.Sprint(time.Now().UnixNano()) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=a1\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: " + fmt.Sprint(time.Now().UnixNano()) + "@test\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}

// udpExchange sends msg from a fresh socket and returns the response, or
// nil when none arrives within wait.
func udpExchange(t *testing.T, to netip.AddrPort, msg string, wait time.Duration) *sip.Response {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, c, wait)
}

func readResponse(t *testing.T, c net.PacketConn, wait time.Duration) *sip.Response {
	t.Helper()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		return nil
	}
	m, err := sip.Parse(buf[:n])
	if err != nil && m == nil {
		// A 400 echoes the client's malformed header, so only a response
		// whose start line fails is unreadable.
		t.Fatalf("response does not parse: %v\n%s", err, buf[:n])
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("got a request back:\n%s", buf[:n])
	}
	return res
}

// streamExchange writes msg on conn and reads one framed response.
func streamExchange(t *testing.T, conn net.Conn, r *bufio.Reader, msg string) *sip.Response {
	t.Helper()
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	return readStreamResponse(t, conn, r)
}

func readStreamResponse(t *testing.T, conn net.Conn, r *bufio.Reader) *sip.Response {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var head strings.Builder
	clen := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading response: %v (so far %q)", err, head.String())
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			fmt.Sscan(strings.TrimSpace(v), &clen)
		}
	}
	body := make([]byte, clen)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	m, err := sip.ParseString(head.String() + string(body))
	if err != nil && m == nil {
		t.Fatalf("response does not parse: %v\n%s", err, head.String())
	}
	return m.(*sip.Response)
}

func TestOptionsToServerOverEachTransport(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	srv := startServer(t, Config{
		Listen:  []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tls:127.0.0.1:0", "udp:[::1]:0", "tcp:[::1]:0"},
		TLSCert: cert, TLSKey: key,
	})
	check := func(t *testing.T, res *sip.Response) {
		t.Helper()
		if res == nil {
			t.Fatal("no response")
		}
		if res.StatusCode != 200 {
			t.Fatalf("status %d %s, want 200", res.StatusCode, res.Reason)
		}
		for _, h := range []string{"Allow", "Accept", "Supported", "Server"} {
			if !res.Has(h) {
				t.Errorf("200 to OPTIONS lacks %s (RFC 3261 §11.2)", h)
			}
		}
		if !strings.Contains(res.Get("Allow"), "OPTIONS") {
			t.Errorf("Allow %q does not list OPTIONS", res.Get("Allow"))
		}
		if res.To.Tag() == "" {
			t.Error("200 lacks a To tag (RFC 3261 §8.2.6.2)")
		}
	}
	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "IPv4", true: "IPv6"}[v6]
		t.Run("UDP "+name, func(t *testing.T) {
			a := srv.addr(t, "UDP", v6)
			check(t, udpExchange(t, a, request("OPTIONS", "sip:"+a.String(), "client.invalid", ""), 5*time.Second))
		})
		t.Run("TCP "+name, func(t *testing.T) {
			a := srv.addr(t, "TCP", v6)
			conn, err := net.Dial("tcp", a.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			check(t, streamExchange(t, conn, bufio.NewReader(conn), request("OPTIONS", "sip:"+a.String()+";transport=tcp", "client.invalid", "")))
		})
	}
	t.Run("TLS", func(t *testing.T) {
		a := srv.addr(t, "TLS", false)
		conn, err := tls.Dial("tcp", a.String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		check(t, streamExchange(t, conn, bufio.NewReader(conn), request("OPTIONS", "sips:"+a.String(), "client.invalid", "")))
	})
}

func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hlas test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestAnswers covers what each kind of request gets, by RFC section.
func TestAnswers(t *testing.T) {
	srv := startServer(t, Config{Domains: []string{"example.test"}})
	a := srv.addr(t, "UDP", false)
	self := "sip:" + a.String()
	tests := []struct {
		name    string
		msg     string
		code    int      // 0: no response expected
		headers []string // header: substring that must be present
	}{
		{"RFC3261 11.2 OPTIONS to the server's domain", request("OPTIONS", "sip:example.test", "c.invalid", ""), 200, []string{"Allow: OPTIONS"}},
		{"RFC3261 11.2 OPTIONS to the server's address", request("OPTIONS", self, "c.invalid", ""), 200, nil},
		{"RFC3261 8.2.2.3 Require with an unknown option", request("OPTIONS", self, "c.invalid", "Require: foo, bar\r\n"), 420, []string{"Unsupported: foo, bar"}},
		{"RFC3261 8.2.1 unknown method to the server", request("FOO", self, "c.invalid", ""), 501, []string{"Allow: OPTIONS, ACK, CANCEL"}},
		{"RFC3261 8.2.1 known method not allowed at the server", request("INVITE", self, "c.invalid", ""), 405, []string{"Allow: OPTIONS"}},
		{"RFC3261 8.2.2.1 unsupported Request-URI scheme", request("OPTIONS", "mailto:a@example.test", "c.invalid", ""), 416, nil},
		{"RFC3261 8.1.1 unsupported SIP version", strings.Replace(request("OPTIONS", self, "c.invalid", ""), "SIP/2.0\r\n", "SIP/3.0\r\n", 1), 505, nil},
		{"RFC3261 16.3 step 3 Max-Forwards 0 on a request to route", strings.Replace(request("MESSAGE", "sip:bob@elsewhere.test", "c.invalid", ""), "Max-Forwards: 70", "Max-Forwards: 0", 1), 483, nil},
		{"RFC3261 16.3 Max-Forwards 0 on OPTIONS to the server itself", strings.Replace(request("OPTIONS", self, "c.invalid", ""), "Max-Forwards: 70", "Max-Forwards: 0", 1), 200, nil},
		{"RFC3261 16.3 step 5 Proxy-Require with an unknown option", request("MESSAGE", "sip:bob@elsewhere.test", "c.invalid", "Proxy-Require: foo\r\n"), 420, []string{"Unsupported: foo"}},
		{"RFC3261 16.3 Proxy-Require is not the UAS's concern", request("OPTIONS", self, "c.invalid", "Proxy-Require: foo\r\n"), 200, nil},
		{"RFC3261 22.3 a request claiming one of our users is challenged: 407", request("INVITE", "sip:bob@example.test", "c.invalid", ""), 407, []string{"Proxy-Authenticate: Digest"}},
		{"RFC3261 16.5 no such user: 404", strings.Replace(request("INVITE", "sip:nobody@example.test", "c.invalid", ""), "From: <sip:alice@example.test>", "From: <sip:carol@elsewhere.test>", 1), 404, nil},
		{"RFC3261 17 ACK is never answered", request("ACK", "sip:bob@example.test", "c.invalid", ""), 0, nil},
		{"RFC3261 9.2 CANCEL matching no transaction", request("CANCEL", "sip:bob@example.test", "c.invalid", ""), 481, nil},
		{"RFC4475 3.1.2.17 CSeq method mismatch", strings.Replace(request("OPTIONS", self, "c.invalid", ""), "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1), 400, []string{"Warning: 399 hlas"}},
		{"RFC4475 3.1.2.18 unknown method with CSeq mismatch", strings.Replace(request("NEWMETHOD", self, "c.invalid", ""), "CSeq: 1 NEWMETHOD", "CSeq: 1 INVITE", 1), 501, nil},
		{"RFC3261 8.2.6 malformed request with a usable Via", strings.Replace(request("OPTIONS", self, "c.invalid", ""), "CSeq: 1 OPTIONS", "CSeq: x OPTIONS", 1), 400, []string{`Warning: 399 hlas "malformed CSeq header"`}},
		{"RFC3261 18.3 Content-Length larger than the datagram", strings.Replace(request("OPTIONS", self, "c.invalid", ""), "Content-Length: 0", "Content-Length: 10", 1), 400, []string{"Content-Length"}},
		{"RFC3261 18.3 bytes after the body are ignored", request("OPTIONS", self, "c.invalid", "") + "garbage", 200, nil},
		{"RFC3261 19.1.1 headers in the Request-URI", request("OPTIONS", self+"?Subject=x", "c.invalid", ""), 400, nil},
		{"no Via: dropped", strings.Replace(request("OPTIONS", self, "c.invalid", ""), "Via:", "X-Via:", 1), 0, nil},
		{"not SIP at all: dropped", "\x16\x03\x01 binary noise", 0, nil},
		{"RFC3261 18.1.2 stray response: dropped", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wait := 5 * time.Second
			if tc.code == 0 {
				wait = 300 * time.Millisecond
			}
			res := udpExchange(t, a, tc.msg, wait)
			if tc.code == 0 {
				if res != nil {
					t.Fatalf("got %d %s, want no response", res.StatusCode, res.Reason)
				}
				return
			}
			if res == nil {
				t.Fatalf("no response, want %d", tc.code)
			}
			if res.StatusCode != tc.code {
				t.Fatalf("got %d %s (%s), want %d", res.StatusCode, res.Reason, res.Get("Warning"), tc.code)
			}
			text := res.String()
			for _, h := range tc.headers {
				if !strings.Contains(text, h) {
					t.Errorf("response lacks %q:\n%s", h, text)
				}
			}
		})
	}
	wantDropped(t, srv, "no_via", 1)
	wantDropped(t, srv, "unparsable", 1)
	wantDropped(t, srv, "stray_response", 1)
}

// TestResponseRouting covers RFC 3261 §18.2.2 and RFC 3581.
func TestResponseRouting(t *testing.T) {
	srv := startServer(t, Config{})
	a := srv.addr(t, "UDP", false)
	self := "sip:" + a.String()

	t.Run("RFC3261 18.2.2 without rport the response goes to the sent-by port", func(t *testing.T) {
		listener, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer listener.Close()
		sender, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer sender.Close()
		msg := strings.Replace(request("OPTIONS", self, listener.LocalAddr().String(), ""), ";rport", "", 1)
		if _, err := sender.WriteToUDPAddrPort([]byte(msg), a); err != nil {
			t.Fatal(err)
		}
		res := readResponse(t, listener, 5*time.Second)
		if res == nil || res.StatusCode != 200 {
			t.Fatalf("no 200 at the sent-by port: %v", res)
		}
		if res.Via[0].Received() != "" {
			t.Errorf("received added although sent-by matches the source: %s", res.Via[0])
		}
		if readResponse(t, sender, 100*time.Millisecond) != nil {
			t.Error("response also went to the source port")
		}
	})
	t.Run("RFC3581 rport sends the response to the source port", func(t *testing.T) {
		res := udpExchange(t, a, request("OPTIONS", self, "192.0.2.1:5999", ""), 5*time.Second)
		if res == nil {
			t.Fatal("no response at the source port")
		}
		v := res.Via[0]
		if v.Received() != "127.0.0.1" {
			t.Errorf("received = %q, want 127.0.0.1", v.Received())
		}
		if p, _ := v.RPort(); p == 0 {
			t.Errorf("rport not filled in: %s", v)
		}
	})
	t.Run("RFC3261 18.2.1 received added when sent-by is a name", func(t *testing.T) {
		srv2 := startServer(t, Config{ForceRPort: true})
		res := udpExchange(t, srv2.addr(t, "UDP", false), strings.Replace(request("OPTIONS", self, "phone.invalid", ""), ";rport", "", 1), 5*time.Second)
		if res == nil {
			t.Fatal("no response with force_rport")
		}
		if res.Via[0].Received() != "127.0.0.1" {
			t.Errorf("received = %q", res.Via[0].Received())
		}
	})
}

func TestStreamFraming(t *testing.T) {
	srv := startServer(t, Config{MaxMessageSize: 4096})
	a := srv.addr(t, "TCP", false)
	self := "sip:" + a.String()
	dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", a.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn, bufio.NewReader(conn)
	}
	t.Run("pipelined requests on one connection", func(t *testing.T) {
		conn, r := dial(t)
		m1 := request("OPTIONS", self, "c.invalid", "")
		m2 := request("INVITE", "sip:bob@elsewhere.test", "c.invalid", "")
		if _, err := conn.Write([]byte(m1 + m2)); err != nil {
			t.Fatal(err)
		}
		got := map[int]bool{}
		for range 2 {
			got[readStreamResponse(t, conn, r).StatusCode] = true
		}
		if !got[200] || !got[404] {
			t.Fatalf("got %v, want a 200 and a 404", got)
		}
	})
	t.Run("a peer that half-closes after sending still gets its response", func(t *testing.T) {
		conn, r := dial(t)
		if _, err := conn.Write([]byte(request("OPTIONS", self, "c.invalid", ""))); err != nil {
			t.Fatal(err)
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if res := readStreamResponse(t, conn, r); res.StatusCode != 200 {
			t.Fatalf("got %d, want 200", res.StatusCode)
		}
	})
	t.Run("RFC5626 3.5.1 double CRLF ping gets a CRLF pong", func(t *testing.T) {
		conn, r := dial(t)
		if _, err := conn.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil || line != "\r\n" {
			t.Fatalf("pong %q, %v", line, err)
		}
		// The connection still works afterwards.
		if res := streamExchange(t, conn, r, request("OPTIONS", self, "c.invalid", "")); res.StatusCode != 200 {
			t.Fatalf("after ping: %d", res.StatusCode)
		}
	})
	t.Run("RFC3261 18.1.1 message over the size limit gets 513", func(t *testing.T) {
		conn, r := dial(t)
		big := request("OPTIONS", self, "c.invalid", "X-Pad: "+strings.Repeat("x", 5000)+"\r\n")
		if res := streamExchange(t, conn, r, big); res.StatusCode != 513 {
			t.Fatalf("got %d, want 513", res.StatusCode)
		}
	})
	t.Run("negative Content-Length gets 400", func(t *testing.T) {
		conn, r := dial(t)
		bad := strings.Replace(request("OPTIONS", self, "c.invalid", ""), "Content-Length: 0", "Content-Length: -5", 1)
		if res := streamExchange(t, conn, r, bad); res.StatusCode != 400 {
			t.Fatalf("got %d, want 400", res.StatusCode)
		}
	})
	t.Run("UDP message over the size limit gets 513", func(t *testing.T) {
		big := request("OPTIONS", self, "c.invalid", "X-Pad: "+strings.Repeat("x", 5000)+"\r\n")
		res := udpExchange(t, srv.addr(t, "UDP", false), big, 5*time.Second)
		if res == nil || res.StatusCode != 513 {
			t.Fatalf("got %v, want 513", res)
		}
	})
}

// heldServer is a server whose handler holds every INFO until release is
// closed (busy is signalled as one arrives), so that requests queue behind
// it, and a UDP socket to talk to it.
type heldServer struct {
	srv     *Server
	release chan struct{}
	busy    chan struct{}
	addr    netip.AddrPort
	c       *net.UDPConn
}

// startHeld starts a heldServer; prepare, when set, runs before Start.
func startHeld(t *testing.T, cfg Config, prepare func(*Server)) *heldServer {
	t.Helper()
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldServer{srv: srv, release: make(chan struct{}), busy: make(chan struct{}, 1)}
	next := srv.handler
	srv.handler = HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if req.Method == "INFO" {
			h.busy <- struct{}{}
			<-h.release
		}
		next.ServeSIP(ctx, tx, req)
	})
	if prepare != nil {
		prepare(srv)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h.addr = srv.addr(t, "UDP", false)
	if h.c, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.c.Close() })
	return h
}

// send sends a request of method to the server itself.
func (h *heldServer) send(t *testing.T, method string) {
	t.Helper()
	if _, err := h.c.WriteToUDPAddrPort([]byte(request(method, "sip:"+h.addr.String(), "c.invalid", "")), h.addr); err != nil {
		t.Fatal(err)
	}
}

// TestOverloadAnswers503 fills the queue while the only worker is busy.
func TestOverloadAnswers503(t *testing.T) {
	h := startHeld(t, Config{Listen: []string{"udp:127.0.0.1:0"}, DataDir: t.TempDir(), Workers: 1, QueueSize: 1}, nil)
	h.send(t, "INFO") // occupies the worker
	<-h.busy
	h.send(t, "OPTIONS") // fills the queue
	h.send(t, "OPTIONS") // overflows
	res := readResponse(t, h.c, 5*time.Second)
	close(h.release)
	if res == nil || res.StatusCode != 503 || res.Get("Retry-After") == "" {
		t.Fatalf("got %v, want 503 with Retry-After", res)
	}
}

// TestTransactions: requests run through the transaction layer. The
// server's own rejections are stateless (no Timer G retransmissions at a
// possibly spoofed source), yet a retransmission gets the very same
// response, To tag included, and leaves no transaction behind.
func TestTransactions(t *testing.T) {
	srv := startServer(t, Config{})
	a := srv.addr(t, "UDP", false)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inv := request("INVITE", "sip:bob@elsewhere.test", "c.invalid", "")
	var tags []string
	for range 2 {
		if _, err := c.WriteToUDPAddrPort([]byte(inv), a); err != nil {
			t.Fatal(err)
		}
		res := readResponse(t, c, 5*time.Second)
		if res == nil || res.StatusCode != 404 {
			t.Fatalf("answer %d: got %v, want 404", len(tags)+1, res)
		}
		tags = append(tags, res.To.Tag())
	}
	if tags[0] != tags[1] {
		t.Errorf("retransmission answered with another To tag: %v", tags)
	}
	// No Timer G: nothing more arrives, and the table is empty.
	if res := readResponse(t, c, 700*time.Millisecond); res != nil {
		t.Fatalf("a stateless 404 was retransmitted: %d", res.StatusCode)
	}
	if st := srv.txl.Stats(); st.ServerActive != 0 || st.Retransmissions != 0 {
		t.Errorf("stats %+v, want no live transaction and no retransmission", st)
	}
	// RFC 3261 §17: ACK is never answered.
	ack := strings.Replace(strings.Replace(inv, "INVITE sip:", "ACK sip:", 1), "CSeq: 1 INVITE", "CSeq: 1 ACK", 1)
	ack = strings.Replace(ack, "To: <sip:bob@elsewhere.test>", "To: <sip:bob@elsewhere.test>;tag="+tags[0], 1)
	if _, err := c.WriteToUDPAddrPort([]byte(ack), a); err != nil {
		t.Fatal(err)
	}
	if res := readResponse(t, c, 200*time.Millisecond); res != nil {
		t.Fatalf("ACK answered: %d", res.StatusCode)
	}
}

// TestStatefulRetransmission: a handler answering through the transaction
// gets retransmissions absorbed and answered by the transaction layer.
func TestStatefulRetransmission(t *testing.T) {
	srv, a := startWithHandler(t, Config{}, func(ctx context.Context, tx ServerTx, req *sip.Request) {
		_ = tx.Respond(srv0(tx).response(req, 202, ""))
	})
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := request("MESSAGE", "sip:bob@elsewhere.test", "c.invalid", "")
	for range 2 {
		if _, err := c.WriteToUDPAddrPort([]byte(msg), a); err != nil {
			t.Fatal(err)
		}
		if res := readResponse(t, c, 5*time.Second); res == nil || res.StatusCode != 202 {
			t.Fatalf("got %v, want 202", res)
		}
	}
	if st := srv.txl.Stats(); st.ServerCreated != 1 || st.Retransmissions != 1 {
		t.Errorf("stats %+v, want one transaction and one retransmission", st)
	}
}

// TestTransactionCeiling: beyond max_transactions new requests get 503.
func TestTransactionCeiling(t *testing.T) {
	_, a := startWithHandler(t, Config{MaxTransactions: 2}, func(ctx context.Context, tx ServerTx, req *sip.Request) {
		_ = tx.Respond(srv0(tx).response(req, 202, "")) // stays 32 s in Completed
	})
	var codes []int
	for range 3 {
		res := udpExchange(t, a, request("MESSAGE", "sip:bob@elsewhere.test", "c.invalid", ""), 5*time.Second)
		if res == nil {
			t.Fatal("no response")
		}
		codes = append(codes, res.StatusCode)
		if res.StatusCode == 503 && res.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	if fmt.Sprint(codes) != "[202 202 503]" {
		t.Fatalf("codes %v, want [202 202 503]", codes)
	}
}

// TestHandlerPanic: a panicking handler costs a 500, not the server.
func TestHandlerPanic(t *testing.T) {
	_, a := startWithHandler(t, Config{}, func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if req.Method == "INFO" {
			panic("boom")
		}
		_ = tx.RespondStateless(srv0(tx).response(req, 200, ""))
	})
	if res := udpExchange(t, a, request("INFO", "sip:bob@elsewhere.test", "c.invalid", ""), 5*time.Second); res == nil || res.StatusCode != 500 {
		t.Fatalf("got %v, want 500", res)
	}
	if res := udpExchange(t, a, request("OPTIONS", "sip:bob@elsewhere.test", "c.invalid", ""), 5*time.Second); res == nil || res.StatusCode != 200 {
		t.Fatalf("server did not survive: %v", res)
	}
}

// startWithHandler runs a UDP server whose chain is replaced by h.
func startWithHandler(t *testing.T, cfg Config, h HandlerFunc) (*Server, netip.AddrPort) {
	t.Helper()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	cfg.DataDir = t.TempDir()
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.handler = h
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, srv.addr(t, "UDP", false)
}

// srv0 builds responses for test handlers (To tag, Server header).
func srv0(tx ServerTx) *Server { return tx.(*serverTx).srv }

// A response released while the server stops (the CDR writer commits
// after the workers are done) must not start a redial behind the
// shutdown's wait: it is refused, and its semaphore slot given back.
func TestRedialAfterShutdown(t *testing.T) {
	srv := newTestServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	err := srv.redial("TCP", netip.MustParseAddrPort("127.0.0.1:9"), []byte("SIP/2.0 200 OK\r\n\r\n"))
	if err == nil {
		t.Fatal("a redial started after shutdown")
	}
	if n := len(srv.redials); n != 0 {
		t.Errorf("%d redial slots held", n)
	}
}

// A worker asks for the listeners (a subscription's Contact) while
// Close holds the server's lock and waits for the workers: Addrs must
// answer without that lock, or shutdown deadlocks (seen in CI: a NOTIFY
// handled during TestResourceListBackEnd's Close).
func TestAddrsWhileClosing(t *testing.T) {
	srv := startServer(t, Config{})
	srv.mu.Lock() // as shutdownLocked holds it
	got := make(chan []Addr, 1)
	go func() { got <- srv.Addrs() }()
	select {
	case a := <-got:
		srv.mu.Unlock()
		if len(a) != 2 || a[0].Proto != "UDP" || a[1].Proto != "TCP" {
			t.Errorf("Addrs() = %v, want the UDP and TCP listeners", a)
		}
	case <-time.After(5 * time.Second): // only ends a failing test
		srv.mu.Unlock()
		t.Fatal("Addrs() waits for the lock Close holds")
	}
}
