package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// drainTimeout bounds how long a connection closed after an unusable
// message keeps discarding input after its FIN, so that its reply is not
// lost to a TCP reset (the way net/http closes after an error).
const drainTimeout = 500 * time.Millisecond

// halfCloseGrace bounds how long a connection the peer half-closed stays
// writable for the responses still being produced.
const halfCloseGrace = 2 * time.Second

// Conn is one TCP or TLS connection, accepted or dialed. Its methods are
// safe for concurrent use.
type Conn struct {
	m       *Manager
	proto   string
	nc      net.Conn  // what is read and written: the TCP conn or its *tls.Conn
	raw     net.Conn  // the TCP conn
	tls     *tls.Conn // nil for TCP
	local   netip.AddrPort
	remote  netip.AddrPort
	inbound bool

	wmu sync.Mutex // one message at a time
	// writeBroken is set (to when reading must end, unix ns) once a
	// write found the peer gone: no more writes; the reader drains.
	writeBroken atomic.Int64
	closed      atomic.Bool
	done        chan struct{} // closed once the conn is closed and out of the table
	closeOnce   sync.Once
	closeErr    error

	// lingering is set once an Oversize or BadFraming packet was
	// delivered: the connection then closes after the next write.
	lingering atomic.Bool
	replied   chan struct{} // capacity 1

	keys []connKey // table entries pointing here; guarded by m.mu

	// WebSocket connections only (ws.go): ws is the connection and wire
	// what it writes to, gated says a gatedConn holds its slot, wsTLS is
	// a wss handshake's state, lastRead (unix ns) and pinger keep it
	// alive.
	onClose  []func() // guarded by qmu; see OnClose
	ws       *websocket.Conn
	wire     *wsWire
	gated    bool
	wsTLS    *tls.ConnectionState
	lastRead atomic.Int64
	pinger   *time.Timer

	// peerNames are the names of the peer's verified certificate, set
	// once after the TLS handshake, before c is in the table or any of
	// its messages is handed on.
	peerNames []string

	// Send's queue. A writer goroutine runs only while it is not empty,
	// so an idle connection costs no goroutine and no channel buffer.
	qmu     sync.Mutex // also held while closing, see Send
	queue   [][]byte   // oldest first
	qbytes  int        // bytes in queue
	writing bool       // a drain goroutine is running
}

// sendQueueLen and sendQueueBytes bound what Send may queue on one
// connection. A burst is fine (the writer catches up); a peer that lets
// this much pile up is not reading and is disconnected. A peer that reads
// too slowly for a single message is caught by WriteTimeout instead.
const (
	sendQueueLen   = 8192
	sendQueueBytes = 4 << 20
)

// ErrSendQueueFull is returned by Send when the peer does not read fast
// enough; the connection is closed.
var ErrSendQueueFull = errors.New("transport: send queue full")

func newConn(m *Manager, proto string, nc net.Conn, local, remote netip.AddrPort, inbound bool) *Conn {
	c := &Conn{
		m: m, proto: proto, nc: nc, raw: nc, local: local, remote: remote, inbound: inbound,
		done: make(chan struct{}), replied: make(chan struct{}, 1),
	}
	switch tc := nc.(type) {
	case *tls.Conn:
		c.tls, c.raw = tc, tc.NetConn()
	default:
		if proto == TLS {
			c.tls = tls.Server(nc, m.cfg.TLSConfig)
			c.nc = c.tls
		}
	}
	return c
}

// Proto returns TCP, TLS, WS or WSS.
func (c *Conn) Proto() string { return c.proto }

// LocalAddr returns the connection's local address, IPv4 unmapped.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// RemoteAddr returns the peer's address, IPv4 unmapped.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.remote }

// Done is closed when the connection has closed and left the table.
func (c *Conn) Done() <-chan struct{} { return c.done }

// TLSConnectionState returns the TLS state (peer certificates, ALPN, ...)
// and true for a TLS connection whose handshake is complete.
func (c *Conn) TLSConnectionState() (tls.ConnectionState, bool) {
	if c.ws != nil {
		return c.wsTLSState()
	}
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	st := c.tls.ConnectionState()
	return st, st.HandshakeComplete
}

// PeerNames returns the names the peer's certificate proves, for
// trusting a peer by its certificate rather than its address (mutual
// TLS): the DNS subjectAltNames of the certificate the handshake verified,
// then its Subject common name if it is not one of them. On an inbound
// connection that is the client certificate, verified against
// TLSConfig.ClientCAs when TLSConfig.ClientAuth asks for verification
// (VerifyClientCertIfGiven or RequireAndVerifyClientCert); on a dialed
// one the server's certificate. It is nil for TCP, before the handshake,
// and when no certificate was verified (none sent, or ClientAuth only
// requests one, or verification is skipped). The names are as the
// certificate spells them (compare them case-insensitively); the slice is
// computed once and shared, so it must not be modified.
func (c *Conn) PeerNames() []string { return c.peerNames }

// setPeerNames computes PeerNames once the handshake is done. Only a
// certificate that chained to a trusted root counts: PeerCertificates
// alone may be whatever the peer sent.
func (c *Conn) setPeerNames() {
	if c.tls == nil {
		return
	}
	st := c.tls.ConnectionState()
	if !st.HandshakeComplete || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return
	}
	cert := st.VerifiedChains[0][0]
	names := make([]string, 0, len(cert.DNSNames)+1)
	names = append(names, cert.DNSNames...)
	if cn := cert.Subject.CommonName; cn != "" && !slices.Contains(names, cn) {
		names = append(names, cn)
	}
	if len(names) > 0 {
		c.peerNames = names
	}
}

func (c *Conn) isClosed() bool { return c.closed.Load() }

// OnClose has f called once c has closed and left the table, so that
// state tied to the connection (a browser's registration, which nothing
// else can reach) goes with it instead of waiting for a timeout. f runs
// on the goroutine that closed c and must not block. On a closed c it
// runs at once.
func (c *Conn) OnClose(f func()) {
	c.qmu.Lock()
	if !c.isClosed() {
		c.onClose = append(c.onClose, f)
		c.qmu.Unlock()
		return
	}
	c.qmu.Unlock()
	<-c.done
	f()
}

// Close closes the connection and removes it and its aliases from the
// table. TLS connections are closed without a close_notify alert, so that
// closing never waits on the peer.
func (c *Conn) Close() error {
	c.closeWith("closed locally")
	return c.closeErr
}

func (c *Conn) closeWith(reason string) {
	c.closeOnce.Do(func() {
		c.qmu.Lock()
		c.closed.Store(true)
		c.queue, c.qbytes = nil, 0
		c.qmu.Unlock()
		if c.pinger != nil {
			c.pinger.Stop()
		}
		if c.ws != nil {
			// At once: Close must not wait up to the library's five
			// seconds for the peer's close frame.
			_ = c.ws.CloseNow()
		} else if err := c.raw.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			c.closeErr = err
		}
		c.m.release(c)
		c.m.log.Debug("connection closed", "proto", c.proto, "remote", c.remote.String(),
			"local", c.local.String(), "reason", reason)
		close(c.done)
		c.qmu.Lock()
		fs := c.onClose
		c.onClose = nil
		c.qmu.Unlock()
		for _, f := range fs {
			f()
		}
	})
}

// Write sends one whole message. Concurrent calls do not interleave. It
// fails with ErrConnClosed on a closed connection and gives up after
// Config.WriteTimeout; any write error closes the connection.
func (c *Conn) Write(data []byte) error {
	return c.write(data, true)
}

// Send queues one whole message for a writer goroutine, which runs only
// while the queue is not empty, and returns at once, so that a worker
// never waits on a peer that does not read: the write deadline then costs
// the writer, not the caller. data is copied. Messages sent on one
// connection keep their order. When the queue is full the peer is too
// slow: the connection is closed and Send fails with ErrSendQueueFull; on
// a closed connection it fails with ErrConnClosed.
func (c *Conn) Send(data []byte) error {
	c.qmu.Lock()
	// Checked under qmu, which closeWith takes too: while c is open its
	// reader goroutine is still counted in m.wg, so adding the drain
	// goroutine to it cannot race with Manager.Close's Wait.
	if c.isClosed() {
		c.qmu.Unlock()
		return fmt.Errorf("transport: send %s %s: %w", c.proto, c.remote, ErrConnClosed)
	}
	if len(c.queue) >= sendQueueLen || c.qbytes+len(data) > sendQueueBytes {
		c.qmu.Unlock()
		c.m.stats[protoIndex(c.proto)].writeErrors.Add(1)
		c.closeWith("send queue full: peer not reading")
		return fmt.Errorf("transport: send %s %s: %w", c.proto, c.remote, ErrSendQueueFull)
	}
	c.queue = append(c.queue, bytes.Clone(data))
	c.qbytes += len(data)
	start := !c.writing
	if start {
		c.writing = true
		c.m.wg.Add(1)
	}
	c.qmu.Unlock()
	if start {
		go c.drain()
	}
	return nil
}

// drain writes what Send queued, oldest first, and returns once the queue
// is empty or the connection closed.
func (c *Conn) drain() {
	defer c.m.wg.Done()
	for {
		c.qmu.Lock()
		if len(c.queue) == 0 || c.isClosed() {
			c.queue, c.qbytes, c.writing = nil, 0, false
			c.qmu.Unlock()
			return
		}
		b := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.qbytes -= len(b)
		c.qmu.Unlock()
		_ = c.write(b, true) // an error closes c, which ends the loop
	}
}

// write sends data; message says whether it counts as a packet (a
// keep-alive pong does not).
func (c *Conn) write(data []byte, message bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() || c.writeBroken.Load() != 0 {
		return fmt.Errorf("transport: write %s %s: %w", c.proto, c.remote, ErrConnClosed)
	}
	st := &c.m.stats[protoIndex(c.proto)]
	if c.ws != nil {
		return c.writeWS(st, data, message)
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.m.cfg.WriteTimeout)); err != nil {
		st.writeErrors.Add(1)
		c.closeWith("write failed: " + err.Error())
		return fmt.Errorf("transport: write %s %s: %w", c.proto, c.remote, err)
	}
	n, err := c.nc.Write(data)
	st.bytesOut.Add(uint64(n))
	if err != nil {
		st.writeErrors.Add(1)
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			// The peer is gone, but what it sent before going may still
			// wait in the socket (a phone that sends its unPUBLISH and
			// closes at once): the reader delivers it, meets the end of
			// the stream within drainTimeout and closes the connection.
			c.writeBroken.Store(time.Now().Add(drainTimeout).UnixNano())
			return fmt.Errorf("transport: write %s %s: %w", c.proto, c.remote, err)
		}
		c.closeWith("write failed: " + err.Error())
		return fmt.Errorf("transport: write %s %s: %w", c.proto, c.remote, err)
	}
	if message {
		st.packetsOut.Add(1)
		if c.m.cfg.Capture != nil {
			c.m.cfg.Capture(true, c.proto, c.local, c.remote, data)
		}
	}
	if c.lingering.Load() {
		select {
		case c.replied <- struct{}{}:
		default:
		}
	}
	return nil
}

// connReader reads a Conn for its framer f. Before each read it sets the
// read deadline to IdleTimeout from now or, once a message has begun to
// arrive, to MessageTimeout after its first byte if that is sooner: the
// idle timeout alone would let a peer dribbling a message that never ends
// (slowloris) hold the connection and its buffer for ever. Keep-alives
// between messages do not start the message clock.
type connReader struct {
	c *Conn
	f *framer

	msgOff   int64     // stream offset of the message being timed
	msgStart time.Time // when it was first seen; zero between messages
	overdue  bool      // the deadline set is the message's, not the idle one
}

func (r *connReader) Read(p []byte) (int, error) {
	c := r.c
	now := time.Now()
	deadline := now.Add(c.m.cfg.IdleTimeout)
	r.overdue = false
	if off, ok := r.f.pending(); !ok {
		r.msgStart = time.Time{}
	} else {
		if r.msgStart.IsZero() || off != r.msgOff {
			r.msgOff, r.msgStart = off, now
		}
		if d := r.msgStart.Add(c.m.cfg.MessageTimeout); d.Before(deadline) {
			deadline, r.overdue = d, true
		}
	}
	if b := c.writeBroken.Load(); b != 0 && time.Unix(0, b).Before(deadline) {
		deadline = time.Unix(0, b)
	}
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := c.nc.Read(p)
	c.m.stats[protoIndex(c.proto)].bytesIn.Add(uint64(n))
	return n, err
}

// serveConn reads one connection until it closes. It is the connection's
// only goroutine while nothing is being sent (see Send).
func (m *Manager) serveConn(c *Conn) {
	defer m.wg.Done()
	why := m.readConn(c)
	if strings.HasPrefix(why, closedByPeer) {
		m.halfClosed(c)
	}
	c.closeWith(why)
}

// pong is the reply to a keep-alive ping; it is only ever read.
var pong = []byte("\r\n")

// closedByPeer starts the reason of a connection the peer shut down.
const closedByPeer = "closed by peer"

// halfClosed keeps a connection whose peer has shut down its sending side
// open for writing a little longer: tools like `nc -N` send a request and
// half-close at once, and the responses to what they sent are still on
// their way from the workers.
func (m *Manager) halfClosed(c *Conn) {
	grace := min(m.cfg.WriteTimeout, halfCloseGrace)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.done:
	case <-m.ctx.Done():
	}
}

// readConn frames and delivers messages; it returns why it stopped.
func (m *Manager) readConn(c *Conn) string {
	st := &m.stats[protoIndex(c.proto)]
	if c.inbound && c.tls != nil {
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.DialTimeout)
		err := c.tls.HandshakeContext(ctx)
		cancel()
		if err != nil {
			st.handshakeErrors.Add(1)
			return "tls handshake failed: " + err.Error()
		}
		c.setPeerNames()
		if !m.register(c) {
			return "closed during tls handshake"
		}
	}
	r := &connReader{c: c}
	f := newFramer(r, m.cfg.MaxMessageSize)
	f.pool = &m.bufs
	r.f = f
	defer f.release()
	for {
		fr, err := f.next()
		if err != nil {
			return m.readError(c, err, f.buffered(), r.overdue)
		}
		if m.cfg.Admit != nil && !m.cfg.Admit(c.proto, c.remote) {
			st.dropped.Add(1)
			st.connsDropped.Add(1)
			return "refused by admit"
		}
		switch fr.kind {
		case framePing: // RFC 5626 §3.5.1: answer CRLFCRLF with CRLF
			st.keepalives.Add(1)
			if err := c.write(pong, false); err != nil {
				return "keep-alive reply failed"
			}
		case frameMessage:
			st.packetsIn.Add(1)
			if m.cfg.Capture != nil {
				m.cfg.Capture(false, c.proto, c.local, c.remote, fr.data)
			}
			m.handler.HandlePacket(&Packet{Data: fr.data, Proto: c.proto, Local: c.local, Remote: c.remote, Conn: c})
		case frameOversize, frameBadFraming:
			p := &Packet{Data: fr.data, Proto: c.proto, Local: c.local, Remote: c.remote, Conn: c}
			why := "oversize message"
			if fr.kind == frameOversize {
				st.oversize.Add(1)
				p.Oversize = true
			} else {
				st.badFraming.Add(1)
				p.BadFraming = fr.reason
				why = "bad framing: " + fr.reason
			}
			m.log.Debug("unusable message, closing after reply", "proto", c.proto, "remote", c.remote.String(),
				"reason", why, "header_bytes", len(fr.data))
			m.linger(c, p)
			return why
		}
	}
}

// linger delivers an Oversize or BadFraming packet, then waits for the
// reply to it (the first write on c), WriteTimeout, or closing. The stream
// cannot be framed any more, so c leaves the table at once: new messages to
// this peer get a new connection. After the reply c half-closes and drains
// input for a moment so that the reply is not lost to a reset.
func (m *Manager) linger(c *Conn, p *Packet) {
	c.lingering.Store(true)
	m.mu.Lock()
	m.removeKeysLocked(c)
	m.mu.Unlock()
	m.handler.HandlePacket(p)
	t := time.NewTimer(m.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case <-c.replied:
	case <-t.C:
		return
	case <-c.done:
		return
	}
	if tc, ok := c.raw.(interface{ CloseWrite() error }); ok {
		if tc.CloseWrite() == nil {
			_ = c.raw.SetReadDeadline(time.Now().Add(drainTimeout))
			_, _ = io.Copy(io.Discard, io.LimitReader(c.raw, int64(m.cfg.MaxMessageSize)))
		}
	}
}

// readError classifies why reading stopped; overdue says the read deadline
// was a message's (see connReader).
func (m *Manager) readError(c *Conn, err error, pending int, overdue bool) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Counted with the idle timeouts: both close a peer that stopped
		// making progress.
		m.stats[protoIndex(c.proto)].connsIdleClosed.Add(1)
		if overdue {
			return fmt.Sprintf("message timeout with %d bytes of an incomplete message", pending)
		}
		return "idle timeout"
	case errors.Is(err, io.EOF) && pending == 0:
		return closedByPeer
	case errors.Is(err, io.EOF):
		return fmt.Sprintf("%s with %d bytes of an incomplete message", closedByPeer, pending)
	case errors.Is(err, net.ErrClosed) || c.isClosed():
		return "closed locally"
	}
	return "read failed: " + err.Error()
}
