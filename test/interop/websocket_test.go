//go:build interop

package interop

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
)

// SIP over WebSocket (RFC 7118) against the real binary: a Go WebSocket
// client plays the browser, sipp the phones on UDP. Test names start with
// WebSocket.

// wsIOWait bounds each wait for a message or a close: far below the 32 s
// of a transaction timeout, so that a 480 that only a timeout would bring
// fails the test.
const wsIOWait = 5 * time.Second

// wsLab is a running `hlas serve` for example.test (alice and bob, with
// their regSubscribers passwords) with udp, ws and wss listeners and the media relay off.
type wsLab struct {
	s       *server
	ws, wss string // host:port of the WebSocket listeners
	pool    *x509.CertPool
}

// newWSLab starts the server; yaml is added to its configuration file.
func newWSLab(t *testing.T, yaml string) *wsLab {
	t.Helper()
	data := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if out, err := hlasCmd(t, "", "user", "add", u+"@example.test", "--password", regSubscribers[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	cert, key, pool := wsTestCert(t)
	cfg := fmt.Sprintf("domain: [ example.test ]\nt1: 100ms\ntls_cert: %s\ntls_key: %s\nmedia:\n  relay: never\n%s", cert, key, yaml)
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	l := &wsLab{pool: pool, ws: fmt.Sprintf("127.0.0.1:%d", ports[1]), wss: fmt.Sprintf("127.0.0.1:%d", ports[2])}
	l.s = startServerWith(t, serverConfig{
		args:   []string{"--config", path, "--data", data},
		listen: []string{fmt.Sprintf("udp:127.0.0.1:%d", ports[0]), "ws:" + l.ws, "wss:" + l.wss},
	})
	return l
}

// wsTestCert writes a self-signed certificate for 127.0.0.1 and its key;
// it returns their paths and a pool that trusts it.
func wsTestCert(t *testing.T) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "hlas interop websocket"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "ws.crt"), filepath.Join(dir, "ws.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// dial opens a WebSocket to the ws (secure false) or wss listener with
// opts (nil: the sip subprotocol, no Origin); the wss client trusts the
// lab's certificate.
func (l *wsLab) dial(t *testing.T, secure bool, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{Subprotocols: []string{"sip"}}
	}
	url := "ws://" + l.ws
	if secure {
		url = "wss://" + l.wss
		if opts.HTTPClient == nil {
			opts.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.pool}}}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wsIOWait)
	defer cancel()
	return websocket.Dial(ctx, url, opts)
}

// wsBrowser is the SIP side of a browser phone (RFC 7118 §5): Via
// SIP/2.0/WS(S) with a .invalid sent-by, Contact .invalid;transport=ws.
// Its reader hands each message to in until the connection closes.
type wsBrowser struct {
	t       *testing.T
	user    string
	proto   string // WS or WSS
	port    int    // the server's listener port it is connected to
	sentBy  string
	contact string
	c       *websocket.Conn
	in      chan wsFrameMsg
	gone    chan struct{} // closed when the reader stopped
	stop    chan struct{} // closed when the test ends
	readErr error
	seen    map[string]bool
	cseq    int
}

type wsFrameMsg struct {
	typ  websocket.MessageType
	data []byte
}

func (l *wsLab) browser(t *testing.T, user string, secure bool) *wsBrowser {
	t.Helper()
	c, res, err := l.dial(t, secure, nil)
	if err != nil {
		t.Fatalf("%s: websocket handshake: %v", user, err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || c.Subprotocol() != "sip" {
		t.Fatalf("%s: handshake %d, subprotocol %q; want 101 and sip", user, res.StatusCode, c.Subprotocol())
	}
	t.Cleanup(func() { c.CloseNow() })
	n := randomToken()[:10]
	b := &wsBrowser{t: t, user: user, proto: "WS", c: c, sentBy: n + ".invalid",
		contact: "sip:" + user + "-" + n + "@" + n + ".invalid;transport=ws",
		in:      make(chan wsFrameMsg, 64), gone: make(chan struct{}), stop: make(chan struct{}), seen: map[string]bool{}}
	t.Cleanup(func() { close(b.stop) })
	addr := l.ws
	if secure {
		b.proto, addr = "WSS", l.wss
	}
	_, port, _ := net.SplitHostPort(addr)
	b.port, _ = strconv.Atoi(port)
	go func() {
		defer close(b.gone)
		for {
			typ, data, err := c.Read(context.Background())
			if err != nil {
				b.readErr = err
				return
			}
			select {
			case b.in <- wsFrameMsg{typ, data}:
			case <-b.stop: // the test is over: nobody reads in
				return
			}
		}
	}()
	return b
}

func (b *wsBrowser) send(msg string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wsIOWait)
	defer cancel()
	if err := b.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		b.t.Fatalf("%s: send: %v", b.user, err)
	}
}

// next returns the next message that is not a provisional response nor
// a copy of one already received (sipp's retransmissions of its 200).
func (b *wsBrowser) next() (sip.Message, []byte) {
	b.t.Helper()
	timeout := time.After(wsIOWait)
	for {
		select {
		case m := <-b.in:
			if b.seen[string(m.data)] {
				continue
			}
			b.seen[string(m.data)] = true
			if m.typ != websocket.MessageText {
				b.t.Errorf("%s: a %v message, want each SIP message in a text message (RFC 7118 §5)", b.user, m.typ)
			}
			msg, err := sip.Parse(m.data)
			if err != nil {
				b.t.Fatalf("%s: does not parse: %v\n%s", b.user, err, m.data)
			}
			if res, ok := msg.(*sip.Response); ok && res.StatusCode < 200 {
				continue
			}
			return msg, m.data
		case <-b.gone:
			b.t.Fatalf("%s: connection closed while waiting: %v", b.user, b.readErr)
		case <-timeout:
			b.t.Fatalf("%s: nothing within %s", b.user, wsIOWait)
		}
	}
}

// response returns the next final response, which must answer method;
// a 2xx to an INVITE that sipp sent again before our ACK reached it is
// passed over.
func (b *wsBrowser) response(method string) *sip.Response {
	b.t.Helper()
	for {
		msg, raw := b.next()
		res, ok := msg.(*sip.Response)
		if ok && method != "INVITE" && res.CSeq.Method == "INVITE" && res.StatusCode < 300 {
			continue
		}
		if !ok || res.CSeq.Method != method {
			b.t.Fatalf("%s: want a final response to %s, got:\n%s", b.user, method, raw)
		}
		return res
	}
}

func (b *wsBrowser) request(method string) *sip.Request {
	b.t.Helper()
	msg, raw := b.next()
	req, ok := msg.(*sip.Request)
	if !ok || req.Method != method {
		b.t.Fatalf("%s: want a %s, got:\n%s", b.user, method, raw)
	}
	return req
}

func (b *wsBrowser) via() string {
	return "Via: SIP/2.0/" + b.proto + " " + b.sentBy + ";branch=z9hG4bK" + randomToken() + "\r\n"
}

func (b *wsBrowser) authorize(res *sip.Response, method, uri string) string {
	b.t.Helper()
	hdr, cred := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		hdr, cred = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch, err := digest.ParseChallenge(res.Get(hdr))
	if err != nil {
		b.t.Fatalf("%s: challenge of the %d: %v", b.user, res.StatusCode, err)
	}
	cr, err := ch.Authorize(digest.Answer{Method: method, URI: uri, Username: b.user, Password: regSubscribers[b.user], NC: 1, CNonce: randomToken()})
	if err != nil {
		b.t.Fatal(err)
	}
	return cred + ": " + cr.String() + "\r\n"
}

// register binds the browser's Contact: 401, then 200 with credentials.
func (b *wsBrowser) register() {
	b.t.Helper()
	callID := randomToken() + "@browser"
	build := func(authz string) string {
		b.cseq++
		return "REGISTER sip:example.test SIP/2.0\r\n" + b.via() + "Max-Forwards: 70\r\n" +
			"From: <sip:" + b.user + "@example.test>;tag=" + randomToken() + "\r\nTo: <sip:" + b.user + "@example.test>\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(b.cseq) + " REGISTER\r\n" +
			"Contact: <" + b.contact + ">;expires=600\r\n" + authz + "Content-Length: 0\r\n\r\n"
	}
	b.send(build(""))
	res := b.response("REGISTER")
	if res.StatusCode != 401 {
		b.t.Fatalf("%s: REGISTER without credentials: %d %s, want 401", b.user, res.StatusCode, res.Reason)
	}
	b.send(build(b.authorize(res, "REGISTER", "sip:example.test")))
	res = b.response("REGISTER")
	if res.StatusCode != 200 {
		b.t.Fatalf("%s: REGISTER with credentials: %d %s, want 200", b.user, res.StatusCode, res.Reason)
	}
	found := false
	for _, c := range res.Contact {
		found = found || c.URI.String() == b.contact
	}
	if !found {
		b.t.Fatalf("%s: 200 lists %v, not its Contact %s (RFC 3261 §10.3 step 8)", b.user, res.Contact, b.contact)
	}
}

// answer writes a response to req as a UAS does (RFC 3261 §8.2.6.2,
// §12.1.1): Vias, Record-Routes, From, To (with tag), Call-ID, CSeq.
func (b *wsBrowser) answer(req *sip.Request, code int, reason, toTag string, contact bool) string {
	var s strings.Builder
	fmt.Fprintf(&s, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range req.Via {
		s.WriteString("Via: " + v.String() + "\r\n")
	}
	for _, rr := range req.RecordRoute {
		s.WriteString("Record-Route: " + rr.String() + "\r\n")
	}
	to := req.To.String()
	if toTag != "" && req.To.Tag() == "" {
		to += ";tag=" + toTag
	}
	fmt.Fprintf(&s, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n", req.From.String(), to, req.CallID, req.CSeq.Seq, req.CSeq.Method)
	if contact {
		s.WriteString("Contact: <" + b.contact + ">\r\n")
	}
	s.WriteString("Content-Length: 0\r\n\r\n")
	return s.String()
}

// wsCheckRR wants the proxy's double Record-Route (RFC 5658) for a call
// between the browser and a UDP phone: the browser's interface on top
// when browserTop, both ours and r2=on, transport=ws on the WebSocket one.
func wsCheckRR(t *testing.T, l *wsLab, b *wsBrowser, rr []sip.Address, browserTop bool) {
	t.Helper()
	if len(rr) != 2 {
		t.Fatalf("%d Record-Route headers %v, want 2: the call crosses WS and UDP (RFC 5658)", len(rr), rr)
	}
	_, udpPort, _ := net.SplitHostPort(l.s.UDP4)
	ws, udp := rr[0].URI, rr[1].URI
	if !browserTop {
		ws, udp = udp, ws
	}
	for _, c := range []struct {
		u         sip.URI
		port      string
		transport string
	}{{ws, strconv.Itoa(b.port), "ws"}, {udp, udpPort, ""}} {
		tr, _ := c.u.Params.Get("transport")
		r2, _ := c.u.Params.Get("r2")
		if c.u.Host != "127.0.0.1" || strconv.Itoa(c.u.Port) != c.port || !strings.EqualFold(tr, c.transport) ||
			r2 != "on" || !c.u.Params.Has("lr") {
			t.Errorf("Record-Route %s: want sip:127.0.0.1:%s;lr (transport %q) with r2=on; all: %v", c.u.String(), c.port, c.transport, rr)
		}
	}
}

// TestWebSocketHandshake: RFC 7118 §4 — the handshake must offer the sip
// subprotocol (101 echoing it, else 400); websocket.allowed_origins
// refuses other origins (403); wss with the configured certificate.
func TestWebSocketHandshake(t *testing.T) {
	t.Parallel()
	l := newWSLab(t, "websocket:\n  allowed_origins: [ \"https://phone.example.test\", \"*.apps.example.test\" ]\n")
	origin := func(o string, protos ...string) *websocket.DialOptions {
		return &websocket.DialOptions{Subprotocols: protos, HTTPHeader: http.Header{"Origin": {o}}}
	}
	for _, tt := range []struct {
		name   string
		secure bool
		opts   *websocket.DialOptions
		want   int
	}{
		{"ws with sip", false, nil, 101},
		{"wss with sip", true, nil, 101},
		{"sip among others", false, &websocket.DialOptions{Subprotocols: []string{"chat", "sip"}}, 101},
		{"no subprotocol", false, &websocket.DialOptions{}, 400},
		{"wss, no subprotocol", true, &websocket.DialOptions{}, 400},
		{"another subprotocol", false, &websocket.DialOptions{Subprotocols: []string{"chat"}}, 400},
		{"allowed origin", false, origin("https://phone.example.test", "sip"), 101},
		{"allowed origin by pattern", true, origin("https://x.apps.example.test", "sip"), 101},
		{"origin not allowed", false, origin("https://evil.test", "sip"), 403},
		{"origin not allowed over wss", true, origin("https://phone.example.test.evil.test", "sip"), 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, res, err := l.dial(t, tt.secure, tt.opts)
			if c != nil {
				defer c.CloseNow()
			}
			if res == nil {
				t.Fatalf("no HTTP answer: %v", err)
			}
			if res.StatusCode != tt.want {
				t.Fatalf("handshake: %d, want %d (%v)", res.StatusCode, tt.want, err)
			}
			if tt.want == 101 && (c == nil || c.Subprotocol() != "sip") {
				t.Fatalf("101 without the sip subprotocol: %v", res.Header)
			}
		})
	}
	t.Run("wss, untrusted certificate", func(t *testing.T) {
		opts := &websocket.DialOptions{Subprotocols: []string{"sip"},
			HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}}
		if c, _, err := l.dial(t, true, opts); err == nil {
			c.CloseNow()
			t.Fatal("the handshake succeeded with a client that does not trust the certificate")
		}
	})
	t.Run("plain HTTP GET", func(t *testing.T) {
		res, err := http.Get("http://" + l.ws + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("GET without upgrade: %d, want 426 (RFC 6455 §4.2.2)", res.StatusCode)
		}
	})
	// The refusals left the listeners serving.
	for _, secure := range []bool{false, true} {
		l.browser(t, "alice", secure).register()
	}
}

// TestWebSocketRegister: digest registration over ws and wss; the
// registrar shows the browser's .invalid Contact to a query over UDP.
func TestWebSocketRegister(t *testing.T) {
	t.Parallel()
	l := newWSLab(t, "")
	for _, secure := range []bool{false, true} {
		b := l.browser(t, "alice", secure)
		b.register()
		res := digestQuery(t, l.s.UDP4, "alice", regSubscribers["alice"])
		found := false
		for _, c := range res.Contact {
			found = found || c.URI.String() == b.contact
		}
		if res.StatusCode != 200 || !found {
			t.Errorf("query over UDP: %d with %v, want 200 listing %s", res.StatusCode, res.Contact, b.contact)
		}
	}
}

// TestWebSocketCallToSipp: a browser (alice, over ws) calls bob, a sipp
// UAS on UDP registered with digest. sipp's scenario checks its side (the
// browser's Via under the proxy's, both Record-Routes); the browser checks
// the 200 and reaches bob with ACK and BYE through the route set.
func TestWebSocketCallToSipp(t *testing.T) {
	t.Parallel()
	l := newWSLab(t, "")
	call, err := filepath.Abs(filepath.Join("testdata", "websocket", "uas_call.xml"))
	if err != nil {
		t.Fatal(err)
	}
	uas, _ := startSipp(t, "127.0.0.1", "-sf", "reg_auth_uas.xml", "-oocsf", call,
		"-t", "u1", "-set", "user", "bob", "-au", "bob", "-ap", regSubscribers["bob"],
		"-m", "1", "-timeout", "30s", "-timeout_error", l.s.UDP4)
	waitBinding(t, l.s, "bob", uas)

	alice := l.browser(t, "alice", false)
	alice.register()
	callID := randomToken() + "@browser"
	const ruri = "sip:bob@example.test"
	invite := func(cseq int, branch, authz string) string {
		return "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/WS " + alice.sentBy + ";branch=" + branch + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=wsa\r\nTo: <" + ruri + ">\r\nCall-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " INVITE\r\nContact: <" + alice.contact + ">\r\n" + authz + "Content-Length: 0\r\n\r\n"
	}
	branch := "z9hG4bK" + randomToken()
	alice.send(invite(1, branch, ""))
	res := alice.response("INVITE")
	if res.StatusCode != 407 {
		t.Fatalf("INVITE: %d %s, want 407", res.StatusCode, res.Reason)
	}
	alice.send("ACK " + ruri + " SIP/2.0\r\nVia: SIP/2.0/WS " + alice.sentBy + ";branch=" + branch + "\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=wsa\r\nTo: " + res.To.String() + "\r\nCall-ID: " + callID + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
	alice.send(invite(2, "z9hG4bK"+randomToken(), alice.authorize(res, "INVITE", ruri)))
	ok := alice.response("INVITE")
	if ok.StatusCode != 200 {
		t.Fatalf("INVITE with credentials: %d %s, want 200 from sipp", ok.StatusCode, ok.Reason)
	}
	if len(ok.Via) != 1 || ok.Via[0].Transport != "WS" || ok.Via[0].Host != alice.sentBy {
		t.Errorf("200 Vias %v: want only the browser's", ok.Via)
	}
	wsCheckRR(t, l, alice, ok.RecordRoute, false) // as sipp got them: its interface on top
	if len(ok.Contact) != 1 {
		t.Fatalf("200 without Contact")
	}
	// The caller's route set: the Record-Route reversed (RFC 3261 §12.1.2).
	var route []string
	for i := len(ok.RecordRoute) - 1; i >= 0; i-- {
		route = append(route, ok.RecordRoute[i].String())
	}
	inDialog := func(method string, cseq int) string {
		return method + " " + ok.Contact[0].URI.String() + " SIP/2.0\r\n" + alice.via() + "Max-Forwards: 70\r\n" +
			"Route: " + strings.Join(route, ", ") + "\r\nFrom: <sip:alice@example.test>;tag=wsa\r\nTo: " + ok.To.String() + "\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " " + method + "\r\nContent-Length: 0\r\n\r\n"
	}
	alice.send(inDialog("ACK", 2))
	alice.send(inDialog("BYE", 3))
	if res := alice.response("BYE"); res.StatusCode != 200 {
		t.Errorf("BYE: %d %s, want 200 from sipp", res.StatusCode, res.Reason)
	}
	uas.wait(t)
	// sipp 3.6 logs a check_it regexp that failed but goes on with the
	// call: its messages are the verdict.
	errs, _ := os.ReadFile(filepath.Join(uas.dir, "errors.log"))
	if out := uas.out.String() + string(errs); strings.Contains(out, "Failed regexp match") {
		t.Errorf("sipp's checks of the INVITE or BYE it got failed:\n%s", tail(out, 6000))
	}
}

// TestWebSocketCallFromSipp: sipp (alice, UDP, digest) calls bob, a
// browser over ws or wss; the browser checks the INVITE (the proxy's WS
// Via over sipp's UDP one, both Record-Routes), answers 180 and 200, and
// takes sipp's ACK and BYE at its .invalid Contact over its WebSocket.
func TestWebSocketCallFromSipp(t *testing.T) {
	t.Parallel()
	l := newWSLab(t, "")
	for _, secure := range []bool{false, true} {
		name := map[bool]string{false: "ws", true: "wss"}[secure]
		t.Run(name, func(t *testing.T) {
			bob := l.browser(t, "bob", secure)
			bob.register()
			uac, _ := startSipp(t, "127.0.0.1", "-sf", "proxy_uac_auth.xml", "-s", "bob",
				"-t", "u1", "-set", "caller", "alice", "-au", "alice", "-ap", regSubscribers["alice"],
				"-m", "1", "-timeout", "30s", "-timeout_error", l.s.UDP4)
			inv := bob.request("INVITE")
			if inv.URI.String() != bob.contact {
				t.Errorf("INVITE to %s, want bob's Contact %s", inv.URI.String(), bob.contact)
			}
			if len(inv.Via) != 2 {
				t.Fatalf("INVITE Vias %v: want the proxy's over sipp's", inv.Via)
			}
			if v := inv.Via[0]; v.Transport != bob.proto || v.Host != "127.0.0.1" || v.Port != bob.port {
				t.Errorf("proxy's Via %s: want SIP/2.0/%s 127.0.0.1:%d", v.String(), bob.proto, bob.port)
			}
			if v := inv.Via[1]; v.Transport != "UDP" {
				t.Errorf("sipp's Via %s: want UDP", v.String())
			}
			wsCheckRR(t, l, bob, inv.RecordRoute, true)
			bob.send(bob.answer(inv, 180, "Ringing", "wsb", true))
			bob.send(bob.answer(inv, 200, "OK", "wsb", true))
			for _, method := range []string{"ACK", "BYE"} {
				req := bob.request(method)
				if req.URI.String() != bob.contact || req.CallID != inv.CallID {
					t.Errorf("%s to %s (Call-ID %s): want %s in the call", method, req.URI.String(), req.CallID, bob.contact)
				}
				if v := req.Via[0]; v.Transport != bob.proto {
					t.Errorf("%s: top Via %s, want the proxy's over %s", method, v.String(), bob.proto)
				}
				if len(req.Route) != 0 {
					t.Errorf("%s still routed through %v", method, req.Route)
				}
				if method == "BYE" {
					bob.send(bob.answer(req, 200, "OK", "", false))
				}
			}
			uac.wait(t)
		})
	}
}

// TestWebSocketClosed: once the browser's WebSocket closes, its binding
// goes, and an INVITE for it from sipp over UDP gets 480 at once (sipp's
// scenario wants it within its -timeout, well below a 32 s transaction
// timeout).
func TestWebSocketClosed(t *testing.T) {
	t.Parallel()
	l := newWSLab(t, "")
	for _, how := range []string{"close frame", "TCP reset"} {
		t.Run(how, func(t *testing.T) {
			bob := l.browser(t, "bob", false)
			bob.register()
			if how == "close frame" {
				if err := bob.c.Close(websocket.StatusGoingAway, "tab closed"); err != nil {
					t.Fatal(err)
				}
			} else {
				bob.c.CloseNow()
			}
			start := time.Now()
			uac, _ := startSipp(t, "127.0.0.1", "-sf", "websocket/uac_unavailable.xml", "-s", "bob",
				"-t", "u1", "-set", "caller", "alice", "-au", "alice", "-ap", regSubscribers["alice"],
				"-m", "1", "-timeout", "10s", "-timeout_error", l.s.UDP4)
			uac.wait(t)
			t.Logf("480 after %v", time.Since(start).Round(time.Millisecond))
			if res := digestQuery(t, l.s.UDP4, "bob", regSubscribers["bob"]); res.StatusCode != 200 || len(res.Contact) != 0 {
				t.Errorf("query after the close: %d with %v, want 200 and no binding", res.StatusCode, res.Contact)
			}
		})
	}
}

// wsRaw is a WebSocket client written by hand, to send what no library
// sends: the handshake of RFC 6455 §4.1, then frames as given.
type wsRaw struct {
	c  net.Conn
	br *bufio.Reader
}

// rawDial completes a handshake offering the sip subprotocol.
func (l *wsLab) rawDial(t *testing.T) *wsRaw {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.ws, wsIOWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	req := "GET / HTTP/1.1\r\nHost: " + l.ws + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(wsIOWait))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if res.StatusCode != 101 || res.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) ||
		res.Header.Get("Sec-WebSocket-Protocol") != "sip" {
		t.Fatalf("handshake: %d %v", res.StatusCode, res.Header)
	}
	return &wsRaw{c: c, br: br}
}

// frame writes one frame: b0 is FIN, RSV and opcode; masked as a client
// must (RFC 6455 §5.3) unless unmasked.
func (r *wsRaw) frame(t *testing.T, b0 byte, payload []byte, unmasked bool) {
	t.Helper()
	b := []byte{b0, 0}
	switch n := len(payload); {
	case n < 126:
		b[1] = byte(n)
	case n < 1<<16:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	p := append([]byte(nil), payload...)
	if !unmasked {
		b[1] |= 0x80
		key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
		b = append(b, key[:]...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	r.write(t, append(b, p...))
}

func (r *wsRaw) write(t *testing.T, b []byte) {
	t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(wsIOWait))
	if _, err := r.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// read returns the server's next frame (unmasked, RFC 6455 §5.1).
func (r *wsRaw) read() (opcode byte, payload []byte, err error) {
	_ = r.c.SetReadDeadline(time.Now().Add(wsIOWait))
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err := io.ReadFull(r.br, x[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err := io.ReadFull(r.br, x[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(x[:])
	}
	if h[1]&0x80 != 0 || n > 1<<20 {
		return 0, nil, fmt.Errorf("bad server frame header %x (length %d)", h, n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r.br, payload)
	return h[0] & 0x0f, payload, err
}

// closed reads until the server ends the connection, and returns the
// status of its close frame (0: it closed without one). A SIP message
// before the close fails the test.
func (r *wsRaw) closed(t *testing.T) int {
	t.Helper()
	status := 0
	for {
		op, p, err := r.read()
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
			return status
		}
		if err != nil {
			t.Fatalf("waiting for the server to close: %v", err)
		}
		switch op {
		case 0x8:
			if len(p) >= 2 {
				status = int(binary.BigEndian.Uint16(p))
			}
		case 0x1, 0x2:
			t.Fatalf("a message instead of a close:\n%s", p)
		}
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// sipOptions is an OPTIONS to the server from a browser.
func sipOptions() string {
	return "OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/WS opt.invalid;branch=z9hG4bK" + randomToken() + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@opt.invalid>;tag=o1\r\nTo: <sip:example.test>\r\nCall-ID: " + randomToken() + "\r\n" +
		"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// wantOK reads the answer to an OPTIONS: a 200 in one text message.
func (r *wsRaw) wantOK(t *testing.T) {
	t.Helper()
	for {
		op, p, err := r.read()
		if err != nil {
			t.Fatalf("no answer to the OPTIONS: %v", err)
		}
		switch op {
		case 0x9, 0xa: // a ping of the server's, or a pong
			continue
		case 0x1:
			if !strings.HasPrefix(string(p), "SIP/2.0 200 ") {
				t.Fatalf("answer to the OPTIONS:\n%s", p)
			}
			return
		default:
			t.Fatalf("frame opcode %#x (%q), want a text message", op, p)
		}
	}
}

// TestWebSocketFrames: RFC 7118 §5 allows binary messages as well as text
// ones, and a message in fragments (RFC 6455 §5.4), with a ping between
// them; the answer is one text message.
func TestWebSocketFrames(t *testing.T) {
	t.Parallel()
	l := newWSLab(t, "")
	t.Run("binary message, library client", func(t *testing.T) {
		c, _, err := l.dial(t, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), wsIOWait)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageBinary, []byte(sipOptions())); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || !strings.HasPrefix(string(data), "SIP/2.0 200 ") {
			t.Fatalf("OPTIONS in a binary message: %v %q %v, want a 200 in a text message", typ, data, err)
		}
	})
	t.Run("binary frame", func(t *testing.T) {
		r := l.rawDial(t)
		r.frame(t, 0x82, []byte(sipOptions()), false)
		r.wantOK(t)
	})
	t.Run("fragments with a ping between", func(t *testing.T) {
		r := l.rawDial(t)
		msg := []byte(sipOptions())
		r.frame(t, 0x01, msg[:20], false) // text, not final
		r.frame(t, 0x89, []byte("hi"), false)
		r.frame(t, 0x00, msg[20:40], false) // continuation
		r.frame(t, 0x80, msg[40:], false)   // continuation, final
		if op, p, err := r.read(); err != nil || op != 0xa || string(p) != "hi" {
			t.Fatalf("answer to the ping: opcode %#x %q %v, want pong \"hi\"", op, p, err)
		}
		r.wantOK(t)
	})
	t.Run("CRLFCRLF keep-alive", func(t *testing.T) {
		r := l.rawDial(t)
		r.frame(t, 0x81, []byte("\r\n\r\n"), false)
		if op, p, err := r.read(); err != nil || op != 0x1 || string(p) != "\r\n" {
			t.Fatalf("keep-alive answer: opcode %#x %q %v, want CRLF", op, p, err)
		}
	})
}

// TestWebSocketMalformed: frames that break RFC 6455 get the connection
// closed — with close 1002 (protocol error) or 1009 (too big) where the
// server says why — and never a SIP answer; the server goes on serving.
func TestWebSocketMalformed(t *testing.T) {
	t.Parallel()
	l := newWSLab(t, "max_message_size: 4096\nmessage_timeout: 1s\n")
	opts := []byte(sipOptions())
	for _, tt := range []struct {
		name string
		send func(t *testing.T, r *wsRaw)
		want []int // acceptable close statuses; 0: closed without a close frame
	}{
		{"unmasked client frame (§5.1)", func(t *testing.T, r *wsRaw) { r.frame(t, 0x81, opts, true) }, []int{0, 1002}},
		{"reserved opcode 0x3", func(t *testing.T, r *wsRaw) { r.frame(t, 0x83, opts, false) }, []int{1002}},
		{"RSV1 without an extension", func(t *testing.T, r *wsRaw) { r.frame(t, 0xc1, opts, false) }, []int{1002}},
		{"RSV2 and RSV3", func(t *testing.T, r *wsRaw) { r.frame(t, 0xb1, opts, false) }, []int{1002}},
		{"fragmented ping (§5.5)", func(t *testing.T, r *wsRaw) { r.frame(t, 0x09, []byte("x"), false) }, []int{1002}},
		{"ping over 125 bytes (§5.5)", func(t *testing.T, r *wsRaw) { r.frame(t, 0x89, make([]byte, 200), false) }, []int{1002}},
		{"continuation with nothing to continue", func(t *testing.T, r *wsRaw) { r.frame(t, 0x80, opts, false) }, []int{1002}},
		{"new message inside a fragmented one", func(t *testing.T, r *wsRaw) {
			r.frame(t, 0x01, opts[:10], false)
			r.frame(t, 0x81, opts, false)
		}, []int{1002}},
		{"over max_message_size", func(t *testing.T, r *wsRaw) { r.frame(t, 0x81, make([]byte, 8192), false) }, []int{1009}},
		{"length of 2^63-1", func(t *testing.T, r *wsRaw) {
			// The header alone is not refused (the library counts bytes as
			// they come); the bytes beyond max_message_size are.
			r.write(t, append([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, make([]byte, 8192)...))
		}, []int{1009}},
		{"a message that never ends (message_timeout)", func(t *testing.T, r *wsRaw) {
			r.write(t, []byte{0x81, 0xfe, 0x04, 0x00, 1, 2, 3, 4, 'O', 'P'})
		}, []int{0, 1008}},
		{"HTTP garbage after the handshake", func(t *testing.T, r *wsRaw) {
			r.write(t, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, []int{1002}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := l.rawDial(t)
			tt.send(t, r)
			got := r.closed(t)
			t.Logf("closed with status %d", got)
			ok := false
			for _, w := range tt.want {
				ok = ok || got == w
			}
			if !ok {
				t.Errorf("closed with status %d, want one of %v (0: no close frame)", got, tt.want)
			}
			// The server goes on serving others.
			s := l.rawDial(t)
			s.frame(t, 0x81, opts, false)
			s.wantOK(t)
		})
	}
	l.s.assertRunning(t)
	l.browser(t, "alice", false).register()
}

// TestWebSocketPing: websocket.ping_interval and ping_timeout — a silent
// connection is pinged, and closed when it does not answer; a connection
// that answers stays.
func TestWebSocketPing(t *testing.T) {
	t.Parallel()
	l := newWSLab(t, "websocket:\n  ping_interval: 300ms\n  ping_timeout: 1s\n")
	quiet := l.rawDial(t)
	answers := l.rawDial(t)
	// answers answers three pings, each within ping_timeout.
	for range 3 {
		op, p, err := answers.read()
		if err != nil || op != 0x9 {
			t.Fatalf("opcode %#x, %v; want a ping", op, err)
		}
		answers.frame(t, 0x8a, p, false)
	}
	// quiet got its ping meanwhile, left it unanswered, and was closed.
	op, _, err := quiet.read()
	if err != nil || op != 0x9 {
		t.Fatalf("the silent connection: opcode %#x, %v; want a ping", op, err)
	}
	quiet.closed(t)
	answers.frame(t, 0x81, []byte(sipOptions()), false)
	answers.wantOK(t)
}
