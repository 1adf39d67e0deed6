package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// WebSocket transports (RFC 7118). Their connections are streams like TCP
// and TLS ones: they share the connection table, MaxConns and
// MaxConnsPerSource, Admit and the Send queue, but each SIP message is one
// WebSocket message instead of a Content-Length-framed run of bytes.
//
// The library is github.com/coder/websocket: it is maintained, has no
// dependencies, keeps a connection at the buffers the hijack hands it
// (small ones here, see wsHijacker) with no goroutine of its own (its
// timeouts use context.AfterFunc), and enforces the read limit while a
// frame arrives, so an oversized message is refused (close 1009) before it
// is buffered.
const (
	WS  = "WS"
	WSS = "WSS"
)

// Defaults of WebSocketConfig.
const (
	DefaultPingInterval = 30 * time.Second
	DefaultPingTimeout  = 10 * time.Second
)

// wsSubprotocol is the subprotocol RFC 7118 §4 registers; a handshake that
// does not offer it is refused.
const wsSubprotocol = "sip"

// maxHandshakeHeader bounds the HTTP header of a WebSocket handshake.
const maxHandshakeHeader = 16 << 10

// ErrNoConnection is returned when a message must go to a WebSocket peer
// that has no open connection: a browser cannot be dialed, so the message
// cannot be delivered until it connects again.
var ErrNoConnection = errors.New("transport: no open WebSocket connection to the peer")

// WebSocketConfig configures the ws and wss listeners; zero fields take
// their defaults.
type WebSocketConfig struct {
	// AllowedOrigins are the Origin values a handshake may carry, matched
	// case-insensitively with path.Match against the origin's host, or
	// against scheme://host when the pattern has "://" (so
	// "*.example.com" or "https://phone.example.com"). A handshake from
	// another origin gets 403. Empty allows every origin: web phones are
	// usually served from another host than the SIP server, and a request
	// still has to authenticate to do anything.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// PingInterval is how long a connection may be silent before the
	// server pings it (a WebSocket ping, RFC 6455 §5.5.2). Default 30s.
	// Pings replace the IdleTimeout of TCP: a browser that keeps
	// answering them stays connected between its registrations.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PingTimeout is how long the pong may take; without it the
	// connection is closed (counted with the idle closes). Default 10s.
	PingTimeout time.Duration `yaml:"ping_timeout"`
}

func (c WebSocketConfig) validate() error {
	for _, p := range c.AllowedOrigins {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil {
			return fmt.Errorf("transport: websocket allowed origin %q: %w", p, err)
		}
	}
	switch {
	case c.PingInterval < 0:
		return fmt.Errorf("transport: websocket ping_interval %s is negative", c.PingInterval)
	case c.PingTimeout < 0:
		return fmt.Errorf("transport: websocket ping_timeout %s is negative", c.PingTimeout)
	}
	return nil
}

func (c WebSocketConfig) withDefaults() WebSocketConfig {
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	return c
}

// isWebSocket reports the WebSocket protocols.
func isWebSocket(proto string) bool { return proto == WS || proto == WSS }

// listenWS opens a ws or wss listener: a TCP socket whose connections are
// admitted and counted as they are accepted (gateListener), then upgraded
// by an http.Server that answers nothing but the handshake.
func (m *Manager) listenWS(lc *net.ListenConfig, p, addr string) (net.Addr, error) {
	network, _, err := listenNetwork("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s %s: %w", strings.ToLower(p), addr, err)
	}
	ln, err := lc.Listen(m.ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s %s: %w", strings.ToLower(p), addr, err)
	}
	l := &streamListener{ln: ln, proto: p, addr: addrPortOf(ln.Addr())}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.upgrade(l, w, r) }),
		// A client that never completes its handshake (TLS included) is
		// a slowloris: it holds a connection slot for at most this long.
		// No ReadTimeout or WriteTimeout: their deadlines would stay on
		// the hijacked connection and cut the WebSocket; the header
		// timeout's is cleared once the request is read.
		ReadHeaderTimeout: m.cfg.DialTimeout,
		IdleTimeout:       m.cfg.DialTimeout,
		MaxHeaderBytes:    maxHandshakeHeader,
		ErrorLog:          log.New(io.Discard, "", 0),
		BaseContext:       func(net.Listener) context.Context { return m.ctx },
		ConnContext:       withGatedConn,
	}
	// One request per connection: one refused closes it, so that a
	// client cannot hold a slot past DialTimeout by asking again and again.
	srv.SetKeepAlivesEnabled(false)
	if p == WSS {
		tc := m.cfg.TLSConfig.Clone()
		tc.NextProtos = []string{"http/1.1"} // WebSocket over HTTP/2 (RFC 8441) is not served
		srv.TLSConfig = tc
	}
	l.srv = srv
	gate := &gateListener{Listener: ln, m: m, proto: p}
	serve := func() {
		defer m.wg.Done()
		if p == WSS {
			_ = srv.ServeTLS(gate, "", "")
		} else {
			_ = srv.Serve(gate)
		}
	}
	if err := m.serveListener(ln, p, l.addr, func() { m.streams = append(m.streams, l) }, serve); err != nil {
		return nil, err
	}
	return ln.Addr(), nil
}

// gateListener applies Admit, MaxConns and MaxConnsPerSource to each
// accepted TCP connection before the HTTP server reads a byte of it, as
// Manager.accept does for TCP and TLS.
type gateListener struct {
	net.Listener
	m     *Manager
	proto string
}

func (g *gateListener) Accept() (net.Conn, error) {
	m := g.m
	st := &m.stats[protoIndex(g.proto)]
	for {
		nc, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		remote := addrPortOf(nc.RemoteAddr())
		if m.cfg.Admit != nil && !m.cfg.Admit(g.proto, remote) {
			st.connsDropped.Add(1)
			nc.Close()
			m.log.Debug("connection refused by admit", "proto", g.proto, "remote", remote.String())
			continue
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			nc.Close()
			return nil, net.ErrClosed
		}
		if m.open >= m.cfg.MaxConns || m.perSource[remote.Addr()] >= m.cfg.MaxConnsPerSource {
			total, fromSource := m.open, m.perSource[remote.Addr()]
			m.mu.Unlock()
			st.connsRejected.Add(1)
			nc.Close()
			m.log.Debug("connection rejected", "proto", g.proto, "remote", remote.String(),
				"open", total, "open_from_source", fromSource)
			continue
		}
		m.open++
		m.perSource[remote.Addr()]++
		m.mu.Unlock()
		gc := &gatedConn{Conn: nc, m: m, proto: g.proto, remote: remote}
		gc.held.Store(true)
		return gc, nil
	}
}

// gatedConn holds one connection slot from accept to close, through the
// handshake and the WebSocket's life: whoever closes it first (the HTTP
// server on a failed handshake, the Conn after an upgrade) gives the slot
// back, once.
type gatedConn struct {
	net.Conn
	m        *Manager
	proto    string
	remote   netip.AddrPort
	held     atomic.Bool
	answered atomic.Bool // its request reached upgrade, which counts a refusal
}

// gatedKey keys a request's gatedConn in its context.
type gatedKey struct{}

// withGatedConn is the handshake server's ConnContext: it lets upgrade
// find the gatedConn under a request (under the *tls.Conn for wss).
func withGatedConn(ctx context.Context, nc net.Conn) context.Context {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if g, ok := nc.(*gatedConn); ok {
		return context.WithValue(ctx, gatedKey{}, g)
	}
	return ctx
}

// CloseWrite shuts the sending side of the TCP connection (see
// wsLinger): the embedded net.Conn does not carry it.
func (g *gatedConn) CloseWrite() error {
	if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (g *gatedConn) Close() error {
	if g.held.CompareAndSwap(true, false) {
		m := g.m
		m.mu.Lock()
		m.open--
		ip := g.remote.Addr()
		if m.perSource[ip]--; m.perSource[ip] <= 0 {
			delete(m.perSource, ip)
		}
		m.mu.Unlock()
		if !g.answered.Load() && m.ctx.Err() == nil {
			// Closed before a request reached upgrade: a failed TLS
			// handshake, a request net/http refused itself (malformed,
			// headers too long), or none within DialTimeout.
			m.stats[protoIndex(g.proto)].handshakeErrors.Add(1)
		}
	}
	return g.Conn.Close()
}

// hasToken reports whether the comma-separated lists of header field key
// hold token, case-insensitively.
func hasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// offersSIP reports whether the handshake offers the sip subprotocol.
func offersSIP(h http.Header) bool { return hasToken(h, "Sec-WebSocket-Protocol", wsSubprotocol) }

// asksUpgrade reports whether a request asks for a WebSocket at all
// (RFC 6455 §4.2.1 items 3 and 4).
func asksUpgrade(h http.Header) bool {
	return hasToken(h, "Upgrade", "websocket") && hasToken(h, "Connection", "upgrade")
}

// originAllowed checks the handshake's Origin against AllowedOrigins.
// A request without Origin is not from a browser and is not checked.
func (m *Manager) originAllowed(r *http.Request) bool {
	pats := m.cfg.WebSocket.AllowedOrigins
	origin := r.Header.Get("Origin")
	if len(pats) == 0 || origin == "" {
		return true
	}
	scheme, host, ok := strings.Cut(strings.ToLower(origin), "://")
	if !ok {
		return false
	}
	for _, p := range pats {
		p = strings.ToLower(p)
		target := host
		if strings.Contains(p, "://") {
			target = scheme + "://" + host
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}

// The buffers the library keeps for a connection's life; net/http's
// hijacked connection would give it 4 KiB of each.
//
// wsReadBufSize is the read buffer, the size of a TCP connection's idle
// one: it holds a frame header and, read with it, a typical SIP message
// whole; the rest of a longer one is read straight into the pooled buffer
// readWS reads messages into.
//
// wsWriteBufSize is the write buffer: room for the largest control frame
// (2 header bytes and 125 of payload, RFC 6455 §5.5), so that a ping, a
// pong or a close goes out in one write. Messages are collected by the
// wsWire under it.
const (
	wsReadBufSize  = idleBufSize
	wsWriteBufSize = 128
)

// wsHijacker is the ResponseWriter a handshake is accepted through: it
// hands the library small buffers in place of net/http's (see
// wsReadBufSize), and keeps the wsWire they write to for Conn.writeWS.
type wsHijacker struct {
	http.ResponseWriter
	bufs *streamBufs
	wire *wsWire
}

func (h *wsHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nc, brw, err
	}
	// What the client sent after its request (a frame sent without
	// waiting for the 101) is in net/http's read buffer, where the
	// library looks for it: it moves to the small buffer if it fits,
	// else that buffer stays.
	if n := brw.Reader.Buffered(); n <= wsReadBufSize {
		pending, _ := brw.Reader.Peek(n)
		br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(pending), nc), wsReadBufSize)
		if _, err := br.Peek(n); err == nil {
			brw.Reader = br
		}
	}
	h.wire = &wsWire{nc: nc, bufs: h.bufs}
	brw.Writer = bufio.NewWriterSize(h.wire, wsWriteBufSize)
	return nc, brw, nil
}

// wsWire is what the library's write buffer writes to. While Conn.writeWS
// sends a message it collects the frame in a buffer from the pool and
// sends it in one write at the end, under the write deadline; otherwise
// (the library's pings, pongs and closes) it writes through. So a message
// still leaves in one system call, as it did through a 4 KiB write
// buffer, but an idle connection holds no such buffer.
type wsWire struct {
	nc   net.Conn
	bufs *streamBufs
	// mu guards what follows and orders the writes to nc: the library
	// writes frames from several goroutines, one frame at a time, and a
	// frame it writes while a message is collected is collected behind
	// it, not written ahead.
	mu          sync.Mutex
	buf         *[readBufSize]byte // while collecting
	n           int                // bytes collected in buf
	deadlineSet bool               // a message's write deadline is still on nc
}

// begin starts collecting; deadline bounds every write until end.
func (w *wsWire) begin(deadline time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	w.buf, w.n, w.deadlineSet = w.bufs.get(), 0, true
	return nil
}

func (w *wsWire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf == nil {
		// The library's own frame, with its own timeout: the last
		// message's deadline must not cut it. Cleared here, not after
		// each message, which would cost a second deadline per message.
		if w.deadlineSet {
			if err := w.nc.SetWriteDeadline(time.Time{}); err != nil {
				return 0, err
			}
			w.deadlineSet = false
		}
		return w.nc.Write(p)
	}
	if w.n+len(p) > len(w.buf) {
		// A message larger than the buffer goes out in pieces, as
		// through a bufio.Writer.
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= len(w.buf) {
			return w.nc.Write(p)
		}
	}
	w.n += copy(w.buf[w.n:], p)
	return len(p), nil
}

func (w *wsWire) flushLocked() error {
	if w.n == 0 {
		return nil
	}
	_, err := w.nc.Write(w.buf[:w.n])
	w.n = 0
	return err
}

// end sends what was collected and gives the buffer back.
func (w *wsWire) end() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.flushLocked()
	w.bufs.put(w.buf)
	w.buf = nil
	return err
}

// upgrade completes a handshake and starts the connection's reader. It
// runs on the HTTP server's goroutine for the connection, and returns once
// the reader is started, so that net/http's state for the request and the
// connection is not kept for the WebSocket's life.
func (m *Manager) upgrade(l *streamListener, w http.ResponseWriter, r *http.Request) {
	st := &m.stats[protoIndex(l.proto)]
	if g, ok := r.Context().Value(gatedKey{}).(*gatedConn); ok {
		g.answered.Store(true)
	}
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	remote = unmap(remote)
	switch {
	case !asksUpgrade(r.Header):
		// Not a handshake at all (a plain GET, a scanner): websocket.Accept
		// answers it 426 Upgrade Required (RFC 6455 §4.2.2), counted below.
	case !offersSIP(r.Header):
		st.handshakeErrors.Add(1)
		m.log.Debug("websocket handshake refused", "proto", l.proto, "remote", remote.String(),
			"reason", "no sip subprotocol", "offered", r.Header.Get("Sec-WebSocket-Protocol"))
		w.Header().Set("Connection", "close")
		http.Error(w, "WebSocket subprotocol \"sip\" required (RFC 7118)", http.StatusBadRequest)
		return
	case !m.originAllowed(r):
		st.handshakeErrors.Add(1)
		m.log.Debug("websocket handshake refused", "proto", l.proto, "remote", remote.String(),
			"reason", "origin not allowed", "origin", r.Header.Get("Origin"))
		w.Header().Set("Connection", "close")
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	hj := &wsHijacker{ResponseWriter: w, bufs: &m.bufs}
	ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{
		Subprotocols:       []string{wsSubprotocol},
		InsecureSkipVerify: true, // the origin was checked above
	})
	if err != nil {
		st.handshakeErrors.Add(1)
		m.log.Debug("websocket handshake failed", "proto", l.proto, "remote", remote.String(), "err", err)
		return
	}
	// Reads beyond the limit fail at once, and the library closes with 1009.
	ws.SetReadLimit(int64(m.cfg.MaxMessageSize))
	local := l.addr
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = addrPortOf(a)
	}
	c := &Conn{
		m: m, proto: l.proto, local: local, remote: remote, inbound: true, gated: true,
		ws: ws, wire: hj.wire, done: make(chan struct{}), replied: make(chan struct{}, 1),
	}
	if r.TLS != nil {
		c.wsTLS = r.TLS
	}
	// The pinger is set before c can be found (Close reads it), and armed
	// only then, so that ping never runs before it is set.
	c.pinger = time.AfterFunc(time.Duration(math.MaxInt64), c.ping)
	c.lastRead.Store(time.Now().UnixNano())
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.pinger.Stop()
		ws.CloseNow()
		return
	}
	m.conns[c] = struct{}{}
	m.addKeyLocked(c, connKey{l.proto, remote})
	m.wg.Add(1)
	st.connsAccepted.Add(1)
	st.connsOpen.Add(1)
	c.pinger.Reset(m.cfg.WebSocket.PingInterval)
	m.mu.Unlock()
	m.log.Debug("websocket connection accepted", "proto", l.proto, "remote", remote.String(), "local", local.String(),
		"origin", r.Header.Get("Origin"))
	go m.serveWS(c)
}

// serveWS reads one WebSocket connection until it closes. It is the
// connection's only goroutine while nothing is being sent (see Send).
func (m *Manager) serveWS(c *Conn) {
	defer m.wg.Done()
	why := m.readWS(c)
	c.closeWith(why)
}

// readWS delivers one SIP message per WebSocket message (text or binary:
// RFC 7118 §5 allows both); it returns why it stopped.
func (m *Manager) readWS(c *Conn) string {
	st := &m.stats[protoIndex(c.proto)]
	// A message that has begun must end within MessageTimeout, so a peer
	// dribbling one (slowloris) cannot hold the connection. One timer,
	// armed while a message arrives.
	slow := time.AfterFunc(time.Duration(math.MaxInt64), func() {
		st.connsIdleClosed.Add(1)
		c.ws.CloseNow()
	})
	slow.Stop()
	defer slow.Stop()
	for {
		// No context: Close closes every connection itself, and one with
		// a deadline would cost the library a context.AfterFunc on each
		// frame, every connection's registered on the one m.ctx.
		_, rd, err := c.ws.Reader(context.Background())
		if err != nil {
			return m.wsReadError(c, err)
		}
		slow.Reset(m.cfg.MessageTimeout)
		// The buffer is taken per message, so that an idle connection
		// holds none (see streamBufs).
		buf := m.bufs.get()
		data, err := readWSMessage(rd, buf[:])
		m.bufs.put(buf)
		if !slow.Stop() {
			return "message timeout"
		}
		st.bytesIn.Add(uint64(len(data)))
		if err != nil {
			return m.wsReadError(c, err)
		}
		c.lastRead.Store(time.Now().UnixNano())
		if m.cfg.Admit != nil && !m.cfg.Admit(c.proto, c.remote) {
			st.dropped.Add(1)
			st.connsDropped.Add(1)
			return "refused by admit"
		}
		if onlyCRLF(data) || len(data) == 0 {
			// A keep-alive as SIP.js sends it: CRLFCRLF gets CRLF, as on
			// TCP (RFC 5626 §3.5.1).
			st.keepalives.Add(1)
			if len(data) >= 4 {
				if err := c.write(pong, false); err != nil { // not a packet, as on TCP
					return "keep-alive reply failed"
				}
			}
			continue
		}
		st.packetsIn.Add(1)
		if m.cfg.Capture != nil {
			m.cfg.Capture(false, c.proto, c.local, c.remote, data)
		}
		m.handler.HandlePacket(&Packet{Data: data, Proto: c.proto, Local: c.local, Remote: c.remote, Conn: c})
	}
}

// readWSMessage reads a whole message into a fresh slice of its size,
// through buf; the read limit set on the connection bounds it.
func readWSMessage(rd io.Reader, buf []byte) ([]byte, error) {
	n := 0
	for {
		k, err := rd.Read(buf[n:])
		n += k
		if err == io.EOF {
			return append([]byte(nil), buf[:n]...), nil
		}
		if err != nil {
			return nil, err
		}
		if n == len(buf) {
			// Longer than the buffer: go on in a growing slice.
			rest, err := io.ReadAll(rd)
			if err != nil {
				return nil, err
			}
			out := make([]byte, 0, n+len(rest))
			return append(append(out, buf[:n]...), rest...), nil
		}
	}
}

// wsReadError classifies why reading a WebSocket stopped.
func (m *Manager) wsReadError(c *Conn, err error) string {
	st := &m.stats[protoIndex(c.proto)]
	switch status := websocket.CloseStatus(err); {
	case status != -1:
		return fmt.Sprintf("%s: close %d %s", closedByPeer, int(status), status)
	case errors.Is(err, websocket.ErrMessageTooBig):
		st.oversize.Add(1)
		m.wsLinger(c)
		return "oversize message (closed with 1009)"
	case errors.Is(err, net.ErrClosed) || c.isClosed() || m.ctx.Err() != nil:
		return "closed locally"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return closedByPeer + " without a close frame"
	}
	st.badFraming.Add(1)
	m.wsLinger(c)
	return "websocket read failed: " + err.Error()
}

// wsLinger lets the close frame the library just sent (1009, 1002) reach
// the peer: closing with the rest of its message unread would make the
// kernel answer with a reset, which can overtake the frame. It shuts the
// sending side and discards input for a moment, as linger does for TCP.
func (m *Manager) wsLinger(c *Conn) {
	if c.wire == nil || c.wire.nc == nil {
		return
	}
	nc := c.wire.nc
	if cw, ok := nc.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	_ = nc.SetReadDeadline(time.Now().Add(drainTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, wsDrainMax))
}

// goAway tells the WebSocket peers among conns that the server is going
// away (close 1001, RFC 6455 §7.4.1), so that a browser phone reconnects
// rather than reporting an abnormal closure (1006). It waits up to
// Config.WSCloseWait for their answers; the connections are closed after
// it either way, and the returned func waits for its goroutines, which
// that ends.
func (m *Manager) goAway(conns []*Conn) (wait func()) {
	var wg sync.WaitGroup
	var told []*Conn
	for _, c := range conns {
		if c.ws == nil || c.isClosed() {
			continue
		}
		told = append(told, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.ws.Close(websocket.StatusGoingAway, "server shutting down")
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(m.cfg.WSCloseWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		// The library waits up to five seconds for an answer, and
		// closing the WebSocket does not cut that short: closing the
		// TCP connection under it does.
		for _, c := range told {
			if c.wire != nil && c.wire.nc != nil {
				_ = c.wire.nc.Close()
			}
		}
	}
	return func() { <-done }
}

// wsDrainMax bounds what wsLinger discards: the rest of an oversized
// message, whose real size only its sender knows; drainTimeout bounds
// the time.
const wsDrainMax = 1 << 20

// ping keeps a silent WebSocket connection alive, and closes it when its
// peer is gone: it runs from the connection's timer, only while a ping is
// due, so an idle connection costs no goroutine.
func (c *Conn) ping() {
	m := c.m
	c.qmu.Lock()
	if c.isClosed() {
		c.qmu.Unlock()
		return
	}
	m.wg.Add(1) // under qmu, as in Send: the reader still counts, so Wait has not returned
	c.qmu.Unlock()
	defer m.wg.Done()
	cfg := m.cfg.WebSocket
	if idle := time.Since(time.Unix(0, c.lastRead.Load())); idle < cfg.PingInterval {
		c.rearm(cfg.PingInterval - idle)
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, cfg.PingTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil {
		if !c.isClosed() {
			m.stats[protoIndex(c.proto)].connsIdleClosed.Add(1)
		}
		c.closeWith("no pong: " + err.Error())
		return
	}
	c.lastRead.Store(time.Now().UnixNano())
	c.rearm(cfg.PingInterval)
}

// rearm sets the next ping unless c has closed meanwhile: a timer armed
// after closeWith stopped it would keep c in memory until it fired.
func (c *Conn) rearm(d time.Duration) {
	c.qmu.Lock()
	if !c.isClosed() {
		c.pinger.Reset(d)
	}
	c.qmu.Unlock()
}

// wsTLSState is the TLS state of a wss connection.
func (c *Conn) wsTLSState() (tls.ConnectionState, bool) {
	if c.wsTLS == nil {
		return tls.ConnectionState{}, false
	}
	return *c.wsTLS, c.wsTLS.HandshakeComplete
}

// writeWS sends data as one text message (RFC 7118 §5: SIP is UTF-8
// text); c.wmu is held.
func (c *Conn) writeWS(st *protoCounters, data []byte, message bool) error {
	// WriteTimeout is a write deadline on the connection, as on TCP, not
	// a context: one with a deadline would cost a timer and the library a
	// context.AfterFunc on every message. The library's own control
	// frames have their own timeouts.
	err := c.wire.begin(time.Now().Add(c.m.cfg.WriteTimeout))
	if err == nil {
		err = c.ws.Write(context.Background(), websocket.MessageText, data)
		if endErr := c.wire.end(); err == nil {
			err = endErr
		}
	}
	if err != nil {
		st.writeErrors.Add(1)
		c.closeWith("write failed: " + err.Error())
		return fmt.Errorf("transport: write %s %s: %w", c.proto, c.remote, err)
	}
	st.bytesOut.Add(uint64(len(data)))
	if message {
		st.packetsOut.Add(1)
		if c.m.cfg.Capture != nil {
			c.m.cfg.Capture(true, c.proto, c.local, c.remote, data)
		}
	}
	return nil
}
