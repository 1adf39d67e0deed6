package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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

	wmu       sync.Mutex // one message at a time
	closed    atomic.Bool
	done      chan struct{} // closed once the conn is closed and out of the table
	closeOnce sync.Once
	closeErr  error

	// lingering is set once an Oversize or BadFraming packet was
	// delivered: the connection then closes after the next write.
	lingering atomic.Bool
	replied   chan struct{} // capacity 1

	keys []connKey // table entries pointing here; guarded by m.mu

	outq   chan []byte  // messages queued by Send for the writer goroutine
	queued atomic.Int64 // bytes in outq
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
		outq: make(chan []byte, sendQueueLen),
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

// Proto returns TCP or TLS.
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
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	st := c.tls.ConnectionState()
	return st, st.HandshakeComplete
}

func (c *Conn) isClosed() bool { return c.closed.Load() }

// Close closes the connection and removes it and its aliases from the
// table. TLS connections are closed without a close_notify alert, so that
// closing never waits on the peer.
func (c *Conn) Close() error {
	c.closeWith("closed locally")
	return c.closeErr
}

func (c *Conn) closeWith(reason string) {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if err := c.raw.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			c.closeErr = err
		}
		c.m.release(c)
		c.m.log.Debug("connection closed", "proto", c.proto, "remote", c.remote.String(),
			"local", c.local.String(), "reason", reason)
		close(c.done)
	})
}

// Write sends one whole message. Concurrent calls do not interleave. It
// fails with ErrConnClosed on a closed connection and gives up after
// Config.WriteTimeout; any write error closes the connection.
func (c *Conn) Write(data []byte) error {
	return c.write(data, true)
}

// Send queues one whole message for the connection's writer goroutine and
// returns at once, so that a worker never waits on a peer that does not
// read: the write deadline then costs the writer, not the caller. data is
// copied. Messages sent on one connection keep their order. When the queue
// is full the peer is too slow: the connection is closed and Send fails
// with ErrSendQueueFull; on a closed connection it fails with
// ErrConnClosed.
func (c *Conn) Send(data []byte) error {
	if c.isClosed() {
		return fmt.Errorf("transport: send %s %s: %w", c.proto, c.remote, ErrConnClosed)
	}
	b := append([]byte(nil), data...)
	if c.queued.Add(int64(len(b))) <= sendQueueBytes {
		select {
		case c.outq <- b:
			return nil
		default:
		}
	}
	c.queued.Add(-int64(len(b)))
	c.m.stats[protoIndex(c.proto)].writeErrors.Add(1)
	c.closeWith("send queue full: peer not reading")
	return fmt.Errorf("transport: send %s %s: %w", c.proto, c.remote, ErrSendQueueFull)
}

// writeLoop writes what Send queued until the connection closes.
func (m *Manager) writeLoop(c *Conn) {
	defer m.wg.Done()
	for {
		select {
		case b := <-c.outq:
			c.queued.Add(-int64(len(b)))
			if c.write(b, true) != nil {
				return
			}
		case <-c.done:
			return
		}
	}
}

// write sends data; message says whether it counts as a packet (a
// keep-alive pong does not).
func (c *Conn) write(data []byte, message bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return fmt.Errorf("transport: write %s %s: %w", c.proto, c.remote, ErrConnClosed)
	}
	st := &c.m.stats[protoIndex(c.proto)]
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.m.cfg.WriteTimeout)); err != nil {
		st.writeErrors.Add(1)
		c.closeWith("write failed: " + err.Error())
		return fmt.Errorf("transport: write %s %s: %w", c.proto, c.remote, err)
	}
	n, err := c.nc.Write(data)
	st.bytesOut.Add(uint64(n))
	if err != nil {
		st.writeErrors.Add(1)
		c.closeWith("write failed: " + err.Error())
		return fmt.Errorf("transport: write %s %s: %w", c.proto, c.remote, err)
	}
	if message {
		st.packetsOut.Add(1)
	}
	if c.lingering.Load() {
		select {
		case c.replied <- struct{}{}:
		default:
		}
	}
	return nil
}

// connReader reads a Conn, renewing the idle deadline before each read.
type connReader struct{ c *Conn }

func (r connReader) Read(p []byte) (int, error) {
	c := r.c
	if err := c.nc.SetReadDeadline(time.Now().Add(c.m.cfg.IdleTimeout)); err != nil {
		return 0, err
	}
	n, err := c.nc.Read(p)
	c.m.stats[protoIndex(c.proto)].bytesIn.Add(uint64(n))
	return n, err
}

// serveConn reads one connection until it closes.
func (m *Manager) serveConn(c *Conn) {
	defer m.wg.Done()
	m.wg.Add(1) // this goroutine is counted, so Close has not returned yet
	go m.writeLoop(c)
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
		if !m.register(c) {
			return "closed during tls handshake"
		}
	}
	f := newFramer(connReader{c}, m.cfg.MaxMessageSize)
	for {
		fr, err := f.next()
		if err != nil {
			return m.readError(c, err, f.buffered())
		}
		switch fr.kind {
		case framePing: // RFC 5626 §3.5.1: answer CRLFCRLF with CRLF
			st.keepalives.Add(1)
			if err := c.write(pong, false); err != nil {
				return "keep-alive reply failed"
			}
		case frameMessage:
			st.packetsIn.Add(1)
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

// readError classifies why reading stopped.
func (m *Manager) readError(c *Conn, err error, pending int) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		m.stats[protoIndex(c.proto)].connsIdleClosed.Add(1)
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
