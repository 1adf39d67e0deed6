package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

// wsRegister is a REGISTER as a browser phone sends it over WebSocket
// (RFC 7118 §8.1): a made-up .invalid host in Via and Contact.
const wsRegister = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf;rport\r\n" +
	"From: sip:alice@example.com;tag=65bnmj.34asd\r\n" +
	"To: sip:alice@example.com\r\n" +
	"Call-ID: aiuy7k9njasd\r\n" +
	"CSeq: 1 REGISTER\r\n" +
	"Max-Forwards: 70\r\n" +
	"Supported: path, outbound, gruu\r\n" +
	"Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>;reg-id=1;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"\r\n" +
	"Content-Length: 0\r\n" +
	"\r\n"

// wsOK is a reply the tests send back.
const wsOK = "SIP/2.0 200 OK\r\nCall-ID: aiuy7k9njasd\r\nContent-Length: 0\r\n\r\n"

// wsClient is a WebSocket client of a test: a coder/websocket connection
// and the address it connects from.
type wsClient struct {
	*websocket.Conn
	local netip.AddrPort
}

// dialWS opens a WebSocket connection offering the sip subprotocol to a
// ws or wss listener; client is the TLS configuration for wss.
func dialWS(t testing.TB, proto string, addr netip.AddrPort, client *tls.Config, opts *websocket.DialOptions) (*wsClient, error) {
	t.Helper()
	var (
		mu    sync.Mutex
		local netip.AddrPort
	)
	d := net.Dialer{Timeout: failsafe}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, a)
			if err == nil {
				mu.Lock()
				local = addrPortOf(c.LocalAddr())
				mu.Unlock()
			}
			return c, err
		},
		TLSClientConfig: client,
	}
	t.Cleanup(tr.CloseIdleConnections)
	var o websocket.DialOptions
	if opts != nil {
		o = *opts
	}
	o.HTTPClient = &http.Client{Transport: tr}
	if o.Subprotocols == nil {
		o.Subprotocols = []string{"sip"}
	}
	scheme := "ws"
	if proto == WSS {
		scheme = "wss"
	}
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, scheme+"://"+addr.String()+"/", &o)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.CloseNow() })
	mu.Lock()
	defer mu.Unlock()
	return &wsClient{Conn: c, local: local}, nil
}

// mustDialWS is dialWS failing the test on an error.
func mustDialWS(t testing.TB, proto string, addr netip.AddrPort, client *tls.Config) *wsClient {
	t.Helper()
	c, err := dialWS(t, proto, addr, client, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

// send writes one text message.
func (c *wsClient) send(t testing.TB, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// recv reads one message.
func (c *wsClient) recv(t testing.TB) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, string(b)
}

// readErr reads until the connection fails and returns why.
func (c *wsClient) readErr(t testing.TB) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the connection stayed open")
			}
			return err
		}
	}
}

// roundTrip sends a REGISTER and expects the echoing handler's reply:
// the connection, and the server, work.
func (c *wsClient) roundTrip(t testing.TB) {
	t.Helper()
	c.send(t, wsRegister)
	if typ, got := c.recv(t); typ != websocket.MessageText || got != wsOK {
		t.Fatalf("reply %v %q, want the 200 as text", typ, got)
	}
}

// replier answers every packet with wsOK on its connection and passes it
// on to a sink.
func replier(s sink) Handler {
	return HandlerFunc(func(p *Packet) {
		if p.Conn != nil {
			_ = p.Conn.Send([]byte(wsOK))
		}
		s <- p
	})
}

// handshake is a raw WebSocket handshake: the request is written by hand
// on a plain TCP connection, so that tests can send what no well-behaved
// client would, and go on with raw frames.
type handshake struct {
	conn net.Conn
	br   *bufio.Reader
	resp *http.Response
}

// rawHandshake sends a handshake request and reads the response. header
// replaces the defaults (a Sec-WebSocket-Key and version, Upgrade,
// Connection, the sip subprotocol): an empty value deletes one, a value
// with newlines is sent as several header lines.
func rawHandshake(t testing.TB, addr netip.AddrPort, header map[string]string) *handshake {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), failsafe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(failsafe))
	req, err := http.NewRequest(http.MethodGet, "http://"+addr.String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"Upgrade":                "websocket",
		"Connection":             "Upgrade",
		"Sec-WebSocket-Key":      "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Version":  "13",
		"Sec-WebSocket-Protocol": "sip",
	} {
		req.Header.Set(k, v)
	}
	for k, v := range header {
		req.Header.Del(k)
		for line := range strings.SplitSeq(v, "\n") {
			if line != "" {
				req.Header.Add(k, line)
			}
		}
	}
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return &handshake{conn: c, br: br, resp: resp}
}

// upgraded is rawHandshake expecting 101.
func upgraded(t testing.TB, addr netip.AddrPort) *handshake {
	t.Helper()
	h := rawHandshake(t, addr, nil)
	if h.resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake answered %s", h.resp.Status)
	}
	return h
}

// Frame opcodes and bits of RFC 6455 §5.2.
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
	bitFin   = 0x80
	bitRSV1  = 0x40
	bitRSV2  = 0x20
	bitRSV3  = 0x10
)

// wsFrame encodes one WebSocket frame: first is the first byte (FIN, RSV
// bits, opcode); masked frames are masked with a fixed key, as a client's
// must be (RFC 6455 §5.3).
func wsFrame(first byte, masked bool, payload []byte) []byte {
	b := []byte{first}
	mask := byte(0)
	if masked {
		mask = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mask|byte(n))
	case n < 1<<16:
		b = append(b, mask|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, mask|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// closePayload is the payload of a close frame with code.
func closePayload(code int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(code)) }

// readFrame reads one frame the server sent (unmasked, RFC 6455 §5.1).
func readFrame(r io.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("the server masked a frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err := io.ReadFull(r, x[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err := io.ReadFull(r, x[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(x[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// serverClose reads what the server sends until it closes the connection
// and returns the status of its close frame, 0 if it closed without one.
func (h *handshake) serverClose(t testing.TB) int {
	t.Helper()
	status := 0
	for {
		op, p, err := readFrame(h.br)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return status
			}
			t.Fatalf("reading until the server closes: %v", err)
		}
		if op == opClose && len(p) >= 2 {
			status = int(binary.BigEndian.Uint16(p))
		}
	}
}

// isReset reports a connection reset: the server closing with unread
// input (the rest of a bad frame) resets rather than ends the stream.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// write sends raw bytes to the server.
func (h *handshake) write(t testing.TB, b []byte) {
	t.Helper()
	if _, err := h.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// slots returns what the Manager counts against MaxConns and
// MaxConnsPerSource for ip.
func slots(m *Manager, ip netip.Addr) (open, fromSource int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.open, m.perSource[ip]
}

// noPacket fails if the handler got a packet.
func noPacket(t *testing.T, s sink) {
	t.Helper()
	select {
	case p := <-s:
		t.Fatalf("unexpected packet %q", p.Data)
	default:
	}
}

var loopback = netip.MustParseAddr("127.0.0.1")

// wsStats picks the counters of WS or WSS.
func wsStats(s Stats, proto string) ProtoStats {
	if proto == WSS {
		return s.WSS
	}
	return s.WS
}

// TestWSHandshake: RFC 7118 §4: a handshake must offer the "sip"
// subprotocol; one that does not gets 400, one from an origin not allowed
// 403, a request that is no WebSocket handshake at all 426 (RFC 6455
// §4.2.2); every refusal is counted and closes the connection, so a
// client cannot keep a slot by repeating requests.
func TestWSHandshake(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"RFC 7118 §4 sip offered", nil, 101},
		{"sip among others", map[string]string{"Sec-WebSocket-Protocol": "chat, sip"}, 101},
		{"sip in a second header line", map[string]string{"Sec-WebSocket-Protocol": "chat\nsip"}, 101},
		{"no subprotocol", map[string]string{"Sec-WebSocket-Protocol": ""}, 400},
		{"chat only", map[string]string{"Sec-WebSocket-Protocol": "chat"}, 400},
		{"sips is not sip", map[string]string{"Sec-WebSocket-Protocol": "sips"}, 400},
		{"plain GET", map[string]string{"Upgrade": "", "Connection": "", "Sec-WebSocket-Key": "", "Sec-WebSocket-Version": "", "Sec-WebSocket-Protocol": ""}, 426},
		{"plain GET offering sip", map[string]string{"Upgrade": "", "Connection": ""}, 426},
		{"no key", map[string]string{"Sec-WebSocket-Key": ""}, 400},
		{"version 8", map[string]string{"Sec-WebSocket-Version": "8"}, 400},
		{"allowed origin pattern", map[string]string{"Origin": "https://phone.example.com"}, 101},
		{"allowed origin with scheme", map[string]string{"Origin": "https://softphone.example.org"}, 101},
		{"origin with another scheme", map[string]string{"Origin": "http://softphone.example.org"}, 403},
		{"origin not allowed", map[string]string{"Origin": "https://evil.example.net"}, 403},
		{"origin without scheme", map[string]string{"Origin": "phone.example.com"}, 403},
		{"no origin: not a browser", map[string]string{"Origin": ""}, 101},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, Config{
				DialTimeout: time.Hour, // a connection kept open would block the test, not time out
				WebSocket:   WebSocketConfig{AllowedOrigins: []string{"*.Example.com", "https://softphone.example.org"}},
			}, nil)
			addr := listen(t, m, "ws", "127.0.0.1")
			h := rawHandshake(t, addr, tc.header)
			if h.resp.StatusCode != tc.want {
				t.Fatalf("status %s, want %d", h.resp.Status, tc.want)
			}
			s := m.Stats().WS
			if tc.want == 101 {
				if got := h.resp.Header.Get("Sec-WebSocket-Protocol"); got != "sip" {
					t.Fatalf("Sec-WebSocket-Protocol %q, want sip", got)
				}
				waitFor(t, "the connection", func() bool { return m.Stats().WS.ConnsOpen == 1 })
				if s := m.Stats().WS; s.HandshakeErrors != 0 || s.ConnsAccepted != 1 {
					t.Fatalf("stats %+v", s)
				}
				return
			}
			if s.HandshakeErrors != 1 || s.ConnsAccepted != 0 || s.ConnsOpen != 0 {
				t.Fatalf("stats %+v", s)
			}
			if got := h.resp.Header.Get("Sec-WebSocket-Accept"); got != "" {
				t.Fatalf("refusal carries Sec-WebSocket-Accept %q", got)
			}
			// Refused means closed: a second request on the connection is
			// not read.
			if n, err := h.br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
				t.Fatalf("read %d bytes, %v after the refusal, want the connection closed", n, err)
			}
			waitFor(t, "the slot to free", func() bool { open, _ := slots(m, loopback); return open == 0 })
			if s := m.Stats().WS; s.HandshakeErrors != 1 {
				t.Fatalf("refusal counted %d times", s.HandshakeErrors)
			}
		})
	}
}

// TestWSNotAHandshake: what never reaches the handshake handler, because
// it is not HTTP, asks too much, or is nothing at all, is answered by
// net/http or dropped, and counted as a failed handshake.
func TestWSNotAHandshake(t *testing.T) {
	for _, tc := range []struct {
		name, sent, want string
	}{
		{"SIP on the ws port", options0, "HTTP/1.1 400"},
		{"garbage", "\x00\x01\x02\r\n\r\n", "HTTP/1.1 400"},
		{"header over 16 KiB", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 20<<10) + "\r\n\r\n", "HTTP/1.1 431"},
		{"connect and close", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{}, replier(h))
			addr := listen(t, m, WS, "127.0.0.1")
			c := dialClient(t, TCP, addr, nil)
			if tc.sent == "" {
				c.Close()
			} else {
				if _, err := io.WriteString(c, tc.sent); err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(c)
				if !strings.HasPrefix(string(b), tc.want) {
					t.Fatalf("answered %q, want %s", b, tc.want)
				}
			}
			waitFor(t, "the count", func() bool { return m.Stats().WS.HandshakeErrors == 1 })
			waitFor(t, "the slot to free", func() bool { open, _ := slots(m, loopback); return open == 0 })
			if s := m.Stats().WS; s.HandshakeErrors != 1 || s.ConnsAccepted != 0 {
				t.Fatalf("stats %+v", s)
			}
			mustDialWS(t, WS, addr, nil).roundTrip(t)
		})
	}
}

// TestWSSubprotocol: a library client offering sip is told sip; one
// offering only chat is refused.
func TestWSSubprotocol(t *testing.T) {
	m := newManager(t, Config{}, nil)
	addr := listen(t, m, WS, "127.0.0.1")
	c := mustDialWS(t, WS, addr, nil)
	if c.Subprotocol() != "sip" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	if _, err := dialWS(t, WS, addr, nil, &websocket.DialOptions{Subprotocols: []string{"chat"}}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("dial offering chat: %v, want a 400", err)
	}
	// The client has its 101 before the server counts the connection.
	waitFor(t, "the counts", func() bool { s := m.Stats().WS; return s.HandshakeErrors == 1 && s.ConnsAccepted == 1 })
}

// TestWSMessages: RFC 7118 §5: each WebSocket message is one SIP message,
// in a text or a binary frame; it reaches the Handler with the client's
// address and its connection, and the replies, over the connection or
// through WriteTo and Dial, arrive as one text message each. A message
// in fragments is one message.
func TestWSMessages(t *testing.T) {
	for _, fam := range families(t) {
		t.Run(fam.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{}, h)
			addr := listen(t, m, "ws", fam.host)
			c := mustDialWS(t, WS, addr, nil)

			c.send(t, wsRegister)
			p := h.next(t)
			if string(p.Data) != wsRegister || p.Proto != WS || p.Remote != c.local || p.Conn == nil || p.Local != addr {
				t.Fatalf("packet %s from %s to %s conn %v: %q; want WS from %s to %s", p.Proto, p.Remote, p.Local, p.Conn, p.Data, c.local, addr)
			}
			if p.Conn.Proto() != WS || p.Conn.RemoteAddr() != c.local || p.Conn.LocalAddr() != addr {
				t.Fatalf("conn %s %s -> %s", p.Conn.Proto(), p.Conn.RemoteAddr(), p.Conn.LocalAddr())
			}
			if _, ok := p.Conn.TLSConnectionState(); ok {
				t.Fatal("a ws connection reports TLS")
			}
			if got := m.Lookup("ws", c.local); got != p.Conn {
				t.Fatalf("Lookup %p, want %p", got, p.Conn)
			}
			if got, err := m.Dial(t.Context(), "WS", netip.AddrPort{}, c.local, ""); err != nil || got != p.Conn {
				t.Fatalf("Dial %p, %v; want the open connection", got, err)
			}

			// Three ways back, each one text message.
			for _, reply := range []struct {
				msg  string
				send func([]byte) error
			}{
				{wsOK, p.Conn.Send},
				{invite10, p.Conn.Write},
				{options0, func(b []byte) error { return m.WriteTo("WS", p.Local, p.Remote, b) }},
			} {
				if err := reply.send([]byte(reply.msg)); err != nil {
					t.Fatal(err)
				}
				if typ, got := c.recv(t); typ != websocket.MessageText || got != reply.msg {
					t.Fatalf("got %v %q, want text %q", typ, got, reply.msg)
				}
			}

			// Binary frames carry SIP too.
			ctx := t.Context()
			if err := c.Write(ctx, websocket.MessageBinary, []byte(invite10)); err != nil {
				t.Fatal(err)
			}
			if p := h.next(t); string(p.Data) != invite10 {
				t.Fatalf("binary message delivered as %q", p.Data)
			}

			// A message larger than a pooled read buffer.
			big := hdr(strings.Repeat("b", 3*readBufSize), fmt.Sprintf("Content-Length: %d", 3*readBufSize))
			c.send(t, big)
			if p := h.next(t); string(p.Data) != big {
				t.Fatalf("large message delivered as %d bytes", len(p.Data))
			}

			s := m.Stats().WS
			if s.PacketsIn != 3 || s.PacketsOut != 3 || s.ConnsAccepted != 1 || s.ConnsOpen != 1 ||
				s.BytesIn != uint64(len(wsRegister)+len(invite10)+len(big)) ||
				s.BytesOut != uint64(len(wsOK)+len(invite10)+len(options0)) {
				t.Fatalf("stats %+v", s)
			}
			if s := m.Stats().TCP; s.ConnsAccepted != 0 || s.PacketsIn != 0 {
				t.Fatalf("WS counted as TCP: %+v", s)
			}
		})
	}
}

// TestWSFragments: RFC 6455 §5.4: a message in fragments, with a ping
// between two of them (§5.5: control frames may come amid a fragmented
// message), is one SIP message; the ping gets its pong at once.
func TestWSFragments(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{}, h)
	addr := listen(t, m, WS, "127.0.0.1")
	c := upgraded(t, addr)
	c.write(t, wsFrame(opText, true, []byte(options0[:5])))
	c.write(t, wsFrame(bitFin|opPing, true, []byte("amid")))
	if op, p, err := readFrame(c.br); err != nil || op != opPong || string(p) != "amid" {
		t.Fatalf("frame %#x %q, %v; want the pong", op, p, err)
	}
	c.write(t, wsFrame(opCont, true, []byte(options0[5:20])))
	c.write(t, wsFrame(opCont, true, nil))
	c.write(t, wsFrame(bitFin|opCont, true, []byte(options0[20:])))
	if p := h.next(t); string(p.Data) != options0 {
		t.Fatalf("fragmented message delivered as %q", p.Data)
	}
	if s := m.Stats().WS; s.PacketsIn != 1 || s.BadFraming != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestWSKeepalive: SIP.js and JsSIP send CRLFCRLF as a keep-alive message
// (RFC 5626 §3.5.1 over WebSocket); it gets CRLF back, is counted and
// not delivered. A lone CRLF (a pong) gets nothing.
func TestWSKeepalive(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{}, h)
	addr := listen(t, m, WS, "127.0.0.1")
	c := mustDialWS(t, WS, addr, nil)
	c.send(t, "\r\n\r\n")
	if typ, got := c.recv(t); typ != websocket.MessageText || got != "\r\n" {
		t.Fatalf("keep-alive answered %v %q", typ, got)
	}
	c.send(t, "\r\n")
	c.send(t, options0)
	// Delivered in order on one connection: nothing came before it.
	if p := h.next(t); string(p.Data) != options0 {
		t.Fatalf("packet %q", p.Data)
	}
	noPacket(t, h)
	if s := m.Stats().WS; s.Keepalives != 2 || s.PacketsIn != 1 || s.PacketsOut != 0 {
		t.Fatalf("stats %+v, want 2 keep-alives, 1 packet in, none out (a pong is no packet)", s)
	}
	c.roundTripAfter(t, h)
}

// roundTripAfter sends a REGISTER and answers it from the test: the
// connection still works.
func (c *wsClient) roundTripAfter(t *testing.T, h sink) {
	t.Helper()
	c.send(t, wsRegister)
	p := h.next(t)
	if err := p.Conn.Send([]byte(wsOK)); err != nil {
		t.Fatal(err)
	}
	if _, got := c.recv(t); got != wsOK {
		t.Fatalf("reply %q", got)
	}
}

// TestWSOversize: a message over MaxMessageSize is refused while it
// arrives, with close status 1009 (RFC 6455 §7.4.1), and counted; one of
// exactly MaxMessageSize is delivered; the server goes on serving.
func TestWSOversize(t *testing.T) {
	const limit = 1024
	h := newSink()
	m := newManager(t, Config{MaxMessageSize: limit}, h)
	addr := listen(t, m, WS, "127.0.0.1")

	c := mustDialWS(t, WS, addr, nil)
	fits := exactly(limit)
	c.send(t, fits)
	if p := h.next(t); string(p.Data) != fits {
		t.Fatalf("message of the limit delivered as %d bytes", len(p.Data))
	}
	for _, tc := range []struct {
		name string
		size int
	}{{"one byte over", limit + 1}, {"a megabyte", 1 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			before := m.Stats().WS.Oversize
			c := mustDialWS(t, WS, addr, nil)
			ctx := t.Context()
			// The server may close before the client has written it all.
			_ = c.Write(ctx, websocket.MessageText, []byte(exactly(tc.size)))
			if err := c.readErr(t); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
				t.Fatalf("read %v, want close status 1009", err)
			}
			waitFor(t, "the close", func() bool { return m.Stats().WS.Oversize == before+1 })
			noPacket(t, h)
			mustDialWS(t, WS, addr, nil).roundTripAfter(t, h)
		})
	}
	c.roundTripAfter(t, h)
	if s := m.Stats().WS; s.Oversize != 2 || s.BadFraming != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestWSBadFrames: a frame RFC 6455 forbids fails the connection, with
// close status 1002 where the library sends one (§7.4.1; for an unmasked
// client frame, §5.1, closing without one is allowed), and is counted;
// other connections go on meanwhile.
func TestWSBadFrames(t *testing.T) {
	tests := []struct {
		name      string
		frames    [][]byte
		mayOmit   bool // closing without a close frame is allowed too
		badFramed bool // counted as bad framing (a peer's close is not)
	}{
		{"RFC 6455 §5.1 unmasked client frame", [][]byte{wsFrame(bitFin|opText, false, []byte(options0))}, true, true},
		{"§5.2 reserved opcode 3", [][]byte{wsFrame(bitFin|0x3, true, []byte("x"))}, false, true},
		{"§5.2 reserved control opcode 11", [][]byte{wsFrame(bitFin|0xB, true, nil)}, false, true},
		{"§5.2 RSV1 without an extension", [][]byte{wsFrame(bitFin|bitRSV1|opText, true, []byte(options0))}, false, true},
		{"§5.2 RSV2", [][]byte{wsFrame(bitFin|bitRSV2|opText, true, []byte(options0))}, false, true},
		{"§5.2 RSV3 on a ping", [][]byte{wsFrame(bitFin|bitRSV3|opPing, true, nil)}, false, true},
		{"§5.5 control frame of 126 bytes", [][]byte{wsFrame(bitFin|opPing, true, make([]byte, 126))}, false, true},
		{"§5.5 fragmented ping", [][]byte{wsFrame(opPing, true, []byte("p"))}, false, true},
		{"§5.4 continuation without a start", [][]byte{wsFrame(bitFin|opCont, true, []byte(options0))}, false, true},
		{"§5.4 new message inside a fragmented one", [][]byte{wsFrame(opText, true, []byte("OPT")), wsFrame(bitFin|opText, true, []byte(options0))}, false, true},
		{"§5.5.1 close payload of one byte", [][]byte{wsFrame(bitFin|opClose, true, []byte{3})}, false, true},
		{"§7.4 close code 999", [][]byte{wsFrame(bitFin|opClose, true, closePayload(999))}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{}, replier(h))
			addr := listen(t, m, WS, "127.0.0.1")
			good := mustDialWS(t, WS, addr, nil)
			good.roundTrip(t)
			<-h

			bad := upgraded(t, addr)
			for _, f := range tc.frames {
				bad.write(t, f)
			}
			status := bad.serverClose(t)
			if status != int(websocket.StatusProtocolError) && (status != 0 || !tc.mayOmit) {
				t.Fatalf("closed with status %d, want 1002", status)
			}
			waitFor(t, "the close", func() bool { return m.Stats().WS.ConnsOpen == 1 })
			if s := m.Stats().WS; s.BadFraming != 1 || s.PacketsIn != 1 {
				t.Fatalf("stats %+v", s)
			}
			noPacket(t, h)
			good.roundTrip(t)
		})
	}
}

// TestWSPeerClose: a close frame from the peer is answered and ends the
// connection; nothing is counted as bad.
func TestWSPeerClose(t *testing.T) {
	m := newManager(t, Config{}, nil)
	addr := listen(t, m, WS, "127.0.0.1")
	c := upgraded(t, addr)
	c.write(t, wsFrame(bitFin|opClose, true, append(closePayload(1000), "bye"...)))
	if status := c.serverClose(t); status != 1000 {
		t.Fatalf("close answered with %d, want the peer's 1000 echoed", status)
	}
	waitFor(t, "the close", func() bool { return m.Stats().WS.ConnsOpen == 0 })
	if s := m.Stats().WS; s.BadFraming != 0 || s.ConnsIdleClosed != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestWSMessageTimeout: a message begun must end within MessageTimeout,
// however slowly its fragments arrive (slowloris over WebSocket).
func TestWSMessageTimeout(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{MessageTimeout: 50 * time.Millisecond}, h)
	addr := listen(t, m, WS, "127.0.0.1")
	c := upgraded(t, addr)
	stop := make(chan struct{})
	dribbling := make(chan struct{})
	go func() {
		defer close(dribbling)
		if _, err := c.conn.Write(wsFrame(opText, true, []byte("O"))); err != nil {
			return
		}
		for {
			if _, err := c.conn.Write(wsFrame(opCont, true, []byte("P"))); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	c.serverClose(t)
	close(stop)
	<-dribbling
	waitFor(t, "the close", func() bool { return m.Stats().WS.ConnsOpen == 0 })
	if s := m.Stats().WS; s.ConnsIdleClosed != 1 || s.PacketsIn != 0 {
		t.Fatalf("stats %+v", s)
	}
	noPacket(t, h)
}

// TestWSHandshakeTimeout: a client that opens a connection and never
// finishes its handshake is closed after DialTimeout, and its slot is
// free again.
func TestWSHandshakeTimeout(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	const half = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
	for _, tc := range []struct {
		proto, name string
		tls         bool // the client completes a TLS handshake first
		sent        string
	}{
		{WS, "half a request", false, half},
		{WS, "nothing", false, ""},
		{WSS, "no TLS handshake", false, ""},
		{WSS, "half a request", true, half},
	} {
		t.Run(tc.proto+"/"+tc.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{DialTimeout: 100 * time.Millisecond, MaxConnsPerSource: 1, TLSConfig: serverTLS}, replier(h))
			addr := listen(t, m, tc.proto, "127.0.0.1")
			var slow net.Conn
			if tc.tls {
				slow = dialClient(t, TLS, addr, clientTLS)
			} else {
				slow = dialClient(t, TCP, addr, nil)
			}
			if _, err := io.WriteString(slow, tc.sent); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the slot taken", func() bool { _, n := slots(m, loopback); return n == 1 })
			// The slot is held: a second connection from the address is
			// refused.
			if _, err := dialWS(t, tc.proto, addr, clientTLS, nil); err == nil {
				t.Fatal("a second connection got in beside the first")
			}
			if n, err := io.Copy(io.Discard, slow); err != nil && !isReset(err) {
				t.Fatalf("read %d bytes, %v: want the connection closed", n, err)
			}
			waitFor(t, "the slot to free", func() bool { open, n := slots(m, loopback); return open == 0 && n == 0 })
			mustDialWS(t, tc.proto, addr, clientTLS).roundTrip(t)
			if s := wsStats(m.Stats(), tc.proto); s.ConnsRejected != 1 || s.ConnsAccepted != 1 || s.HandshakeErrors != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestWSConnectionLimits: WebSocket connections share MaxConns with TCP
// and count against MaxConnsPerSource from accept to close; one beyond is
// closed before its handshake.
func TestWSConnectionLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"MaxConnsPerSource", Config{MaxConnsPerSource: 2}},
		{"MaxConns", Config{MaxConns: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, tc.cfg, replier(h))
			wsAddr := listen(t, m, WS, "127.0.0.1")
			tcpAddr := listen(t, m, TCP, "127.0.0.1")
			c1 := mustDialWS(t, WS, wsAddr, nil)
			c1.roundTrip(t)
			t1 := dialClient(t, TCP, tcpAddr, nil)
			pingPong(t, t1)

			rawHandshakeRefused(t, wsAddr)
			if _, err := dialWS(t, WS, wsAddr, nil, nil); err == nil {
				t.Fatal("a connection beyond the limit was upgraded")
			}
			waitFor(t, "the refusals", func() bool { return m.Stats().WS.ConnsRejected == 2 })
			if s := m.Stats().WS; s.ConnsAccepted != 1 || s.ConnsOpen != 1 || s.HandshakeErrors != 0 {
				t.Fatalf("stats %+v", s)
			}
			// A slot freed is usable.
			c1.Close(websocket.StatusNormalClosure, "")
			waitFor(t, "a slot to free", func() bool { open, _ := slots(m, loopback); return open == 1 })
			c2 := mustDialWS(t, WS, wsAddr, nil)
			c2.roundTrip(t)
			pingPong(t, t1)
			_ = t1.(*net.TCPConn).SetLinger(0) // a reset: no half-close grace
			t1.Close()
			waitFor(t, "the TCP slot to free", func() bool { open, _ := slots(m, loopback); return open == 1 })
			mustDialWS(t, WS, wsAddr, nil).roundTrip(t)
		})
	}
}

// rawHandshakeRefused sends a handshake on a connection the server must
// close unread, and checks that nothing comes back.
func rawHandshakeRefused(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	c := dialClient(t, TCP, addr, nil)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n")
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Fatalf("read %d bytes from a refused connection", n)
	}
}

// TestWSAdmit: Admit refuses a connection before its handshake, and a
// message on an open connection, which it then closes; both counted.
func TestWSAdmit(t *testing.T) {
	var banned atomic.Bool
	var asked atomic.Int32
	h := newSink()
	m := newManager(t, Config{Admit: func(proto string, remote netip.AddrPort) bool {
		asked.Add(1)
		if proto != WS || remote.Addr() != loopback {
			t.Errorf("Admit(%q, %s)", proto, remote)
		}
		return !banned.Load()
	}}, replier(h))
	addr := listen(t, m, WS, "127.0.0.1")

	banned.Store(true)
	rawHandshakeRefused(t, addr)
	waitFor(t, "the refusal", func() bool { return m.Stats().WS.ConnsDropped == 1 })
	if s := m.Stats().WS; s.ConnsAccepted != 0 || s.HandshakeErrors != 0 || asked.Load() != 1 {
		t.Fatalf("stats %+v, Admit asked %d times", s, asked.Load())
	}

	banned.Store(false)
	c := mustDialWS(t, WS, addr, nil)
	c.roundTrip(t)
	<-h
	banned.Store(true)
	c.send(t, wsRegister)
	if err := c.readErr(t); err == nil {
		t.Fatal("read after the refusal")
	}
	waitFor(t, "the close", func() bool { return m.Stats().WS.ConnsOpen == 0 })
	// Asked: the refused accept, the accept, the message, the refused one.
	if s := m.Stats().WS; s.Dropped != 1 || s.ConnsDropped != 2 || s.PacketsIn != 1 || asked.Load() != 4 {
		t.Fatalf("stats %+v, Admit asked %d times", s, asked.Load())
	}
	noPacket(t, h)
}

// TestWSClosedByPeer: a connection the client closes leaves the table:
// no Lookup finds it, and a message to the client cannot be sent, since
// a browser cannot be dialed (RFC 7118 §5: the server never opens a
// connection to it).
func TestWSClosedByPeer(t *testing.T) {
	for _, how := range []string{"close frame", "TCP close"} {
		t.Run(how, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{}, h)
			addr := listen(t, m, WS, "127.0.0.1")
			c := mustDialWS(t, WS, addr, nil)
			c.send(t, wsRegister)
			p := h.next(t)
			if how == "close frame" {
				if err := c.Close(websocket.StatusGoingAway, "page closed"); err != nil {
					t.Fatal(err)
				}
			} else {
				c.CloseNow()
			}
			select {
			case <-p.Conn.Done():
			case <-time.After(failsafe):
				t.Fatal("the connection stayed open")
			}
			if got := m.Lookup(WS, c.local); got != nil {
				t.Fatal("closed connection still in the table")
			}
			if _, err := m.Dial(t.Context(), WS, netip.AddrPort{}, c.local, ""); !errors.Is(err, ErrNoConnection) {
				t.Fatalf("Dial: %v, want ErrNoConnection", err)
			}
			if err := m.WriteTo(WS, netip.AddrPort{}, c.local, []byte(wsOK)); !errors.Is(err, ErrNoConnection) {
				t.Fatalf("WriteTo: %v, want ErrNoConnection", err)
			}
			if err := p.Conn.Send([]byte(wsOK)); !errors.Is(err, ErrConnClosed) {
				t.Fatalf("Send on the closed conn: %v", err)
			}
			if s := m.Stats().WS; s.ConnsOpen != 0 || s.BadFraming != 0 {
				t.Fatalf("stats %+v", s)
			}
			if open, n := slots(m, loopback); open != 0 || n != 0 {
				t.Fatalf("slots %d, %d from the source; want none", open, n)
			}
		})
	}
}

// TestWSNeverDialed: a WebSocket peer with no connection is not dialed.
func TestWSNeverDialed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m := newManager(t, Config{}, nil)
	for _, proto := range []string{"ws", "WSS"} {
		if err := m.WriteTo(proto, netip.AddrPort{}, addrPortOf(ln.Addr()), []byte(options0)); !errors.Is(err, ErrNoConnection) {
			t.Fatalf("WriteTo %s: %v, want ErrNoConnection", proto, err)
		}
	}
	if s := m.Stats(); s.WS.DialErrors != 0 || s.WS.ConnsDialed != 0 || s.TCP.ConnsDialed != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestWSPing: a connection silent for PingInterval is pinged; a peer
// that answers stays connected, one that does not is closed PingTimeout
// later and counted with the idle closes.
func TestWSPing(t *testing.T) {
	t.Run("no pong", func(t *testing.T) {
		m := newManager(t, Config{WebSocket: WebSocketConfig{PingInterval: 200 * time.Millisecond, PingTimeout: 200 * time.Millisecond}}, nil)
		addr := listen(t, m, WS, "127.0.0.1")
		c := upgraded(t, addr)
		// Read frames but never answer: the server's ping comes first.
		op, _, err := readFrame(c.br)
		if err != nil || op != opPing {
			t.Fatalf("first frame %#x, %v; want a ping", op, err)
		}
		c.serverClose(t)
		waitFor(t, "the close", func() bool { return m.Stats().WS.ConnsOpen == 0 })
		if s := m.Stats().WS; s.ConnsIdleClosed != 1 || s.BadFraming != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("answered", func(t *testing.T) {
		h := newSink()
		// The interval is short, so that pings come often; the timeout is
		// long, so that a slow test machine does not miss one.
		// DialTimeout is shorter still: the handshake's deadlines end
		// with the handshake.
		m := newManager(t, Config{
			DialTimeout: 10 * time.Millisecond,
			WebSocket:   WebSocketConfig{PingInterval: 50 * time.Millisecond, PingTimeout: failsafe},
		}, replier(h))
		addr := listen(t, m, WS, "127.0.0.1")
		pinged := make(chan struct{}, 100)
		c, err := dialWS(t, WS, addr, nil, &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
			pinged <- struct{}{}
			return true
		}})
		if err != nil {
			t.Fatal(err)
		}
		// The client answers pings while it reads.
		msgs := make(chan string, 10)
		go func() {
			defer close(msgs)
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					return
				}
				msgs <- string(b)
			}
		}()
		for i := range 5 {
			select {
			case <-pinged:
			case <-time.After(failsafe):
				t.Fatalf("ping %d never came", i+1)
			}
		}
		c.send(t, wsRegister)
		if got := <-msgs; got != wsOK {
			t.Fatalf("reply %q", got)
		}
		if s := m.Stats().WS; s.ConnsIdleClosed != 0 || s.ConnsOpen != 1 {
			t.Fatalf("stats %+v", s)
		}
		c.CloseNow()
		for range msgs {
		}
	})
}

// TestWSS: wss is WebSocket over TLS: the TLS handshake, then the sip
// subprotocol; the connection reports its TLS state.
func TestWSS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	h := newSink()
	m := newManager(t, Config{TLSConfig: serverTLS}, replier(h))
	addr := listen(t, m, "wss", "127.0.0.1")
	c := mustDialWS(t, WSS, addr, clientTLS)
	if c.Subprotocol() != "sip" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	c.roundTrip(t)
	p := <-h
	if p.Proto != WSS || p.Remote != c.local || p.Conn.Proto() != WSS {
		t.Fatalf("packet %s from %s", p.Proto, p.Remote)
	}
	st, ok := p.Conn.TLSConnectionState()
	if !ok || !st.HandshakeComplete || st.Version < tls.VersionTLS12 {
		t.Fatalf("TLS state %v %+v", ok, st)
	}
	if err := m.WriteTo(WSS, netip.AddrPort{}, c.local, []byte(options0)); err != nil {
		t.Fatal(err)
	}
	if _, got := c.recv(t); got != options0 {
		t.Fatalf("got %q", got)
	}
	if m.Lookup(WS, c.local) != nil {
		t.Fatal("a wss connection is found as ws")
	}
	// A cleartext handshake on the wss port is no handshake.
	rawHandshakeNoTLS(t, addr)
	waitFor(t, "the failed TLS handshake counted", func() bool { return m.Stats().WSS.HandshakeErrors == 1 })
	if s := m.Stats(); s.WSS.ConnsAccepted != 1 || s.WSS.PacketsIn != 1 || s.WS.ConnsAccepted != 0 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := newManager(t, Config{}, nil).Listen(WSS, "127.0.0.1:0"); err == nil {
		t.Fatal("wss listening without a TLS configuration")
	}
}

// rawHandshakeNoTLS sends a cleartext handshake to a wss listener, which
// must not answer it as WebSocket.
func rawHandshakeNoTLS(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	c := dialClient(t, TCP, addr, nil)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n")
	b, _ := io.ReadAll(c)
	if strings.Contains(string(b), "101") {
		t.Fatalf("a cleartext handshake on wss answered %q", b)
	}
}

// TestWSCloseWaits: Close ends every goroutine with ws and wss listeners,
// upgraded connections, and connections in their handshake open; every
// client sees its connection end.
func TestWSCloseWaits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	serverTLS, clientTLS := testTLS(t)
	h := newSink()
	m := New(Config{TLSConfig: serverTLS}, replier(h))
	wsAddr, err := m.Listen(WS, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wssAddr, err := m.Listen(WSS, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ws, wss := addrPortOf(wsAddr), addrPortOf(wssAddr)
	var clients []*wsClient
	for range 3 {
		clients = append(clients, mustDialWS(t, WS, ws, nil), mustDialWS(t, WSS, wss, clientTLS))
	}
	clients[0].roundTrip(t)
	clients[1].roundTrip(t)
	var raws []net.Conn
	// On each listener: a connection silent from the start (on wss, in
	// its TLS handshake), and one with half a request.
	for _, a := range []netip.AddrPort{ws, wss} {
		silent, err := net.Dial("tcp", a.String())
		if err != nil {
			t.Fatal(err)
		}
		var half net.Conn
		if a == wss {
			half, err = tls.Dial("tcp", a.String(), clientTLS)
		} else {
			half, err = net.Dial("tcp", a.String())
		}
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, silent, half)
		if _, err := io.WriteString(half, "GET / HTTP/1.1\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, c := range raws {
			c.Close()
		}
	}()
	waitFor(t, "every connection", func() bool { open, _ := slots(m, loopback); return open == 10 })
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if err := c.readErr(t); err == nil {
			t.Fatal("a client still reads")
		}
	}
	for _, c := range raws {
		_ = c.SetReadDeadline(time.Now().Add(failsafe))
		if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
			t.Fatalf("raw client: %v, want the connection closed", err)
		}
	}
	// Handshakes cut short by Close are no failures.
	if s := m.Stats(); s.WS.ConnsOpen != 0 || s.WSS.ConnsOpen != 0 || s.WS.HandshakeErrors != 0 || s.WSS.HandshakeErrors != 0 {
		t.Fatalf("after Close: %+v", s)
	}
	if open, n := slots(m, loopback); open != 0 || n != 0 {
		t.Fatalf("slots after Close: %d, %d", open, n)
	}
	if _, err := m.Listen(WS, "127.0.0.1:0"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Listen after Close: %v", err)
	}
	for _, c := range clients {
		c.CloseNow()
	}
}

// TestWSConfig: bad WebSocket settings are refused by name; defaults fill
// the zero ones.
func TestWSConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  WebSocketConfig
		want string
	}{
		{"bad origin pattern", WebSocketConfig{AllowedOrigins: []string{"[a-"}}, "allowed origin"},
		{"negative ping interval", WebSocketConfig{PingInterval: -time.Second}, "ping_interval"},
		{"negative ping timeout", WebSocketConfig{PingTimeout: -time.Second}, "ping_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{WebSocket: tc.cfg}.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if err := (Config{WebSocket: WebSocketConfig{AllowedOrigins: []string{"*.example.com", "https://a.example.org"}}}).Validate(); err != nil {
		t.Fatal(err)
	}
	d := Config{}.withDefaults().WebSocket
	if d.PingInterval != DefaultPingInterval || d.PingTimeout != DefaultPingTimeout {
		t.Fatalf("defaults %+v", d)
	}
}

// Environment of TestWSIdleMemory: how many connections it opens, and
// where it writes a heap profile taken while they are idle.
const (
	wsMemConnsEnv   = "HLAS_WS_MEM_CONNS"
	wsMemProfileEnv = "HLAS_WS_MEM_PROFILE"
)

// TestWSIdleMemory measures what an idle WebSocket connection costs the
// Manager: heap and stack in use per connection, once each has carried
// one request and its reply, and whether closed connections leave any of
// it behind. The clients are in the process, but as small as a client
// can be (a TCP connection with the handshake and frames written by hand,
// no goroutine), so the figures include about 0.1 KiB of theirs. Run it
// with HLAS_WS_MEM_CONNS=1000 and -v to see the figures at scale, and
// HLAS_WS_MEM_PROFILE=file for a heap profile of the idle connections
// (go tool pprof -sample_index=inuse_space).
func TestWSIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	n := 300
	if s := os.Getenv(wsMemConnsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("%s=%q: want a positive number", wsMemConnsEnv, s)
		}
		n = v
	}
	profile := os.Getenv(wsMemProfileEnv)
	if profile != "" {
		runtime.MemProfileRate = 1
	}
	// The handler keeps no packet: a packet holds its connection.
	m := newManager(t, Config{MaxConns: n + 1, MaxConnsPerSource: n + 1},
		HandlerFunc(func(p *Packet) { _ = p.Conn.Send([]byte(wsOK)) }))
	addr := listen(t, m, WS, "127.0.0.1")
	used := func() (heap, stack uint64) {
		// Several cycles: each halves an idle goroutine stack that uses
		// under a quarter of itself.
		for range 6 {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse
	}
	per := func(a, b uint64) int64 { return (int64(a) - int64(b)) / int64(n) }
	heap0, stack0 := used()
	goroutines0 := runtime.NumGoroutine()
	var heapFirst uint64
	for round := 1; round <= 2; round++ {
		conns := make([]net.Conn, n)
		for i := range conns {
			conns[i] = idleWSClient(t, addr)
		}
		waitFor(t, "the replies counted", func() bool { return m.Stats().WS.PacketsOut == uint64(round*n) })
		waitFor(t, "one goroutine per connection", func() bool { return runtime.NumGoroutine() <= goroutines0+n+8 })
		heap, stack := used()
		perConn := per(heap+stack, heap0+stack0)
		t.Logf("round %d, %d idle WS connections: %d B heap+stack per connection (heap %d B, stack %d B), %.2f goroutines per connection",
			round, n, perConn, per(heap, heap0), per(stack, stack0), float64(runtime.NumGoroutine()-goroutines0)/float64(n))
		if profile != "" && round == 1 {
			f, err := os.Create(profile)
			if err != nil {
				t.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		// Generous (10 KiB measured, 14 KiB under -race): it catches the
		// 25 KiB an idle connection cost when the handshake's goroutine
		// was its reader, not the noise of a busy collector.
		if perConn > 20<<10 {
			t.Errorf("an idle WS connection costs %d bytes, want at most %d", perConn, 20<<10)
		}
		for _, c := range conns {
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
		waitFor(t, "the connections to close", func() bool { return m.Stats().WS.ConnsOpen == 0 })
		waitFor(t, "their goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines0 })
		heap, stack = used()
		t.Logf("round %d, after they closed: %d B heap+stack per former connection still in use", round, per(heap+stack, heap0+stack0))
		// What stays is the runtime's high-water mark (dead goroutines
		// kept for reuse, map capacity): it must not grow from one round
		// to the next.
		if round == 1 {
			heapFirst = heap
		} else if grown := per(heap, heapFirst); grown > 512 {
			t.Errorf("heap in use grew by %d bytes per connection from one round of closed connections to the next", grown)
		}
	}
}

// idleWSClient opens a WebSocket connection by hand, sends a REGISTER
// once the handshake is answered, as a browser does, and reads the reply:
// the smallest client that leaves the server's side as a browser's would
// be between two registrations.
func idleWSClient(t *testing.T, addr netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), failsafe)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(failsafe))
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
	var buf [512]byte
	// readUntil reads until buf[:got] ends with end; the server sends
	// nothing more before the client's next message.
	readUntil := func(got int, end string) int {
		for !strings.HasSuffix(string(buf[:got]), end) {
			k, err := c.Read(buf[got:])
			if err != nil {
				t.Fatalf("read %q, then %v", buf[:got], err)
			}
			got += k
		}
		return got
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if got := readUntil(0, "\r\n\r\n"); !strings.HasPrefix(string(buf[:got]), "HTTP/1.1 101 ") {
		t.Fatalf("handshake answered %q", buf[:got])
	}
	if _, err := c.Write(wsFrame(bitFin|opText, true, []byte(wsRegister))); err != nil {
		t.Fatal(err)
	}
	// The reply: an unmasked text frame under 126 bytes.
	if got := readUntil(0, wsOK); got != 2+len(wsOK) || buf[0] != bitFin|opText {
		t.Fatalf("reply %q", buf[:got])
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// hijackable is a ResponseWriter whose Hijack returns a connection and
// the buffers net/http would hand over.
type hijackable struct {
	http.ResponseWriter
	nc  net.Conn
	brw *bufio.ReadWriter
}

func (h hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) { return h.nc, h.brw, nil }

// TestWSHijackBuffers: the library gets a read buffer of wsReadBufSize
// and a write buffer of wsWriteBufSize in place of net/http's 4 KiB ones,
// and bytes net/http had read past the request (a client that sent a
// frame without waiting for the 101) are read first, from the small
// buffer if they fit in it, else from net/http's.
func TestWSHijackBuffers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pending int
		keeps   bool // net/http's read buffer stays
	}{
		{"nothing read ahead", 0, false},
		{"a frame read ahead", 300, false},
		{"as much as the small buffer holds", wsReadBufSize, false},
		{"one byte more", wsReadBufSize + 1, true},
		{"a large frame", 3000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer server.Close()
			defer client.Close()
			pending := strings.Repeat("p", tc.pending)
			// As net/http leaves it: what it read past the request is
			// buffered, the rest still in the connection.
			netHTTP := bufio.NewReaderSize(io.MultiReader(strings.NewReader(pending), server), 4096)
			if _, err := netHTTP.Peek(tc.pending); err != nil {
				t.Fatal(err)
			}
			h := &wsHijacker{
				ResponseWriter: hijackable{nc: server, brw: bufio.NewReadWriter(netHTTP, bufio.NewWriter(server))},
				bufs:           &streamBufs{},
			}
			nc, brw, err := h.Hijack()
			if err != nil || nc != server {
				t.Fatalf("Hijack: %v, %v", nc, err)
			}
			if got, want := brw.Reader.Size(), wsReadBufSize; tc.keeps && got != 4096 || !tc.keeps && got != want {
				t.Fatalf("read buffer of %d bytes", got)
			}
			if brw.Writer.Size() != wsWriteBufSize || h.wire == nil {
				t.Fatalf("write buffer of %d bytes, wire %v", brw.Writer.Size(), h.wire)
			}
			go func() { _, _ = io.WriteString(client, "after") }()
			got := make([]byte, tc.pending+len("after"))
			if _, err := io.ReadFull(brw.Reader, got); err != nil || string(got) != pending+"after" {
				t.Fatalf("read %q, %v; want what was read ahead, then the rest", got, err)
			}
		})
	}
}

// TestWSFrameWithHandshake: a client that sends its first frames with
// its handshake request, without waiting for the 101, has them read as
// the first messages, short or long.
func TestWSFrameWithHandshake(t *testing.T) {
	big := hdr(strings.Repeat("b", 2*wsReadBufSize), fmt.Sprintf("Content-Length: %d", 2*wsReadBufSize))
	for _, tc := range []struct {
		name string
		msgs []string
	}{
		{"one message", []string{options0}},
		{"two messages", []string{options0, wsRegister}},
		{"a message over the read buffer", []string{big}},
		{"a short one and a long one", []string{wsRegister, big}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newSink()
			m := newManager(t, Config{}, replier(h))
			addr := listen(t, m, WS, "127.0.0.1")
			c := dialClient(t, TCP, addr, nil)
			out := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
			for _, msg := range tc.msgs {
				out += string(wsFrame(bitFin|opText, true, []byte(msg)))
			}
			if _, err := io.WriteString(c, out); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake answered %v, %v", resp, err)
			}
			for i, msg := range tc.msgs {
				if p := h.next(t); string(p.Data) != msg {
					t.Fatalf("message %d delivered as %d bytes %.40q, want %d bytes", i, len(p.Data), p.Data, len(msg))
				}
				if op, p, err := readFrame(br); err != nil || op != opText || string(p) != wsOK {
					t.Fatalf("reply %d: %#x %q, %v", i, op, p, err)
				}
			}
		})
	}
}

// TestWSWriteTimeout: a peer that stops reading makes the writes to it
// fail after WriteTimeout, which closes its connection and is counted,
// while other connections go on.
func TestWSWriteTimeout(t *testing.T) {
	reasons := make(closeReasons, 16)
	h := newSink()
	m := newManager(t, Config{WriteTimeout: 50 * time.Millisecond, Logger: slog.New(reasons)}, h)
	addr := listen(t, m, WS, "127.0.0.1")
	stuck := upgraded(t, addr)
	_ = stuck.conn.(*net.TCPConn).SetReadBuffer(4096)
	stuck.write(t, wsFrame(bitFin|opText, true, []byte(options0)))
	ps := h.next(t)
	// A small socket buffer on the server's side too, so that what the
	// kernels hold is far below what is sent.
	_ = ps.Conn.wire.nc.(*gatedConn).Conn.(*net.TCPConn).SetWriteBuffer(4096)
	fine := mustDialWS(t, WS, addr, nil)
	fine.send(t, options0)
	pf := h.next(t)

	msg := []byte(strings.Repeat("x", 32<<10))
	for i := range 64 { // 2 MiB: the send queue takes 4 MiB
		if err := ps.Conn.Send(msg); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	select {
	case <-ps.Conn.Done():
	case <-time.After(failsafe):
		t.Fatal("the connection to a peer that does not read stayed open")
	}
	if why := <-reasons; !strings.HasPrefix(why, "write failed") {
		t.Fatalf("closed for %q, want a failed write", why)
	}
	if err := pf.Conn.Write([]byte(wsOK)); err != nil {
		t.Fatal(err)
	}
	if _, got := fine.recv(t); got != wsOK {
		t.Fatalf("reply %q", got)
	}
	if s := m.Stats().WS; s.WriteErrors != 1 || s.ConnsOpen != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestWSControlFramesAfterWrite: the write deadline of a message does not
// outlive it: pings the server sends later, past WriteTimeout, go out,
// and the connection stays.
func TestWSControlFramesAfterWrite(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{
		WriteTimeout: 10 * time.Millisecond,
		WebSocket:    WebSocketConfig{PingInterval: 50 * time.Millisecond, PingTimeout: failsafe},
	}, replier(h))
	addr := listen(t, m, WS, "127.0.0.1")
	c := upgraded(t, addr)
	c.write(t, wsFrame(bitFin|opText, true, []byte(options0)))
	<-h
	if op, p, err := readFrame(c.br); err != nil || op != opText || string(p) != wsOK {
		t.Fatalf("reply %#x %q, %v", op, p, err)
	}
	for i := range 3 {
		op, p, err := readFrame(c.br)
		if err != nil || op != opPing {
			t.Fatalf("frame %d after the reply: %#x %q, %v; want a ping", i, op, p, err)
		}
		c.write(t, wsFrame(bitFin|opPong, true, p))
	}
	if s := m.Stats().WS; s.ConnsOpen != 1 || s.WriteErrors != 0 || s.ConnsIdleClosed != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestWSControlFramesAmidMessages: the library's control frames (pongs to
// the client's pings, written by the reader, and the server's own pings)
// go out whole between messages sent meanwhile, short or longer than a
// pooled buffer, which arrive whole and in order.
func TestWSControlFramesAmidMessages(t *testing.T) {
	h := newSink()
	reasons := make(closeReasons, 16)
	m := newManager(t, Config{Logger: slog.New(reasons), WebSocket: WebSocketConfig{PingInterval: time.Millisecond, PingTimeout: failsafe}}, h)
	addr := listen(t, m, WS, "127.0.0.1")
	c := upgraded(t, addr)
	c.write(t, wsFrame(bitFin|opText, true, []byte(options0)))
	p := h.next(t)

	// 2.4 MiB in all: the send queue takes 4 MiB.
	const n = 600
	msgs := make([]string, n)
	for i := range msgs {
		body := strings.Repeat("b", i*53%(2*readBufSize+100))
		msgs[i] = hdr(body, fmt.Sprintf("Content-Length: %d", len(body)))
	}
	sent := make(chan error, 1)
	go func() {
		for _, msg := range msgs {
			if err := p.Conn.Send([]byte(msg)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	// The client pings while it reads, and answers the server's pings.
	var pinger sync.WaitGroup
	stop := make(chan struct{})
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := c.conn.Write(b)
		return err
	}
	pinger.Go(func() {
		for i := range 5000 {
			select {
			case <-stop:
				return
			default:
			}
			if write(wsFrame(bitFin|opPing, true, []byte(strconv.Itoa(i)))) != nil {
				return
			}
			runtime.Gosched()
		}
	})
	defer func() { close(stop); pinger.Wait() }()
	got, pongs, pings := 0, 0, 0
	last := false // the pong to the ping sent after the last message came
	for got < n || !last {
		op, payload, err := readFrame(c.br)
		if err != nil {
			select {
			case why := <-reasons:
				t.Fatalf("after %d messages: %v; the server closed: %s", got, err, why)
			default:
			}
			t.Fatalf("after %d messages: %v", got, err)
		}
		switch op {
		case opText:
			if got == n || string(payload) != msgs[got] {
				t.Fatalf("message %d arrived as %d bytes %.40q", got, len(payload), payload)
			}
			if got++; got == n {
				if err := write(wsFrame(bitFin|opPing, true, []byte("last"))); err != nil {
					t.Fatal(err)
				}
			}
		case opPong:
			if string(payload) == "last" {
				last = true
			} else if _, err := strconv.Atoi(string(payload)); err != nil {
				t.Fatalf("pong %q", payload)
			}
			pongs++
		case opPing:
			pings++
			if err := write(wsFrame(bitFin|opPong, true, payload)); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("frame %#x %q", op, payload)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages, %d pongs and %d pings among them", got, pongs, pings)
	if s := m.Stats().WS; s.ConnsOpen != 1 || s.WriteErrors != 0 || s.PacketsOut != n {
		t.Fatalf("stats %+v", s)
	}
}

// TestWSGoingAway: closing the manager tells WebSocket peers the server
// is going away (1001), on ws and wss, rather than dropping the TCP
// connection (which a browser reports as 1006).
func TestWSGoingAway(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	serverTLS, clientTLS := testTLS(t)
	m := New(Config{TLSConfig: serverTLS}, replier(newSink()))
	wsAddr, err := m.Listen(WS, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wssAddr, err := m.Listen(WSS, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clients := []*wsClient{mustDialWS(t, WS, addrPortOf(wsAddr), nil), mustDialWS(t, WSS, addrPortOf(wssAddr), clientTLS)}
	for _, c := range clients {
		c.roundTrip(t)
	}
	errs := make(chan error, len(clients))
	for _, c := range clients {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), failsafe)
			defer cancel()
			_, _, err := c.Read(ctx) // reading answers the close frame
			errs <- err
		}()
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for range clients {
		if err := <-errs; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("client read: %v, want close 1001", err)
		}
	}
	for _, c := range clients {
		c.CloseNow()
	}
}

// TestWSGoingAwaySilentPeer: a client that never answers the close frame
// (it does not read) holds Close up for WSCloseWait, not for the
// library's own five-second wait, and nothing of its connection is left
// behind. The failsafe is a few times WSCloseWait and under the default
// (1s), so a Close that ignores the setting fails here.
func TestWSGoingAwaySilentPeer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const wait = 200 * time.Millisecond
	m := New(Config{WSCloseWait: wait}, replier(newSink()))
	addr, err := m.Listen(WS, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := mustDialWS(t, WS, addrPortOf(addr), nil)
	c.roundTrip(t)
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(4 * wait):
		c.CloseNow() // lets Close end, for goleak
		<-closed
		t.Fatalf("Close still waiting %s after its WSCloseWait of %s on a peer that never answers its close frame", 4*wait, wait)
	}
	if s := m.Stats(); s.WS.ConnsOpen != 0 {
		t.Fatalf("after Close: %+v", s.WS)
	}
	c.CloseNow()
}
