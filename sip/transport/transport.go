package transport

import (
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
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Transport protocol names, as they appear in a Via header (RFC 3261 §18).
const (
	UDP = "UDP"
	TCP = "TCP"
	TLS = "TLS"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxMessageSize    = 65536
	DefaultIdleTimeout       = 5 * time.Minute
	DefaultMessageTimeout    = 30 * time.Second
	DefaultMaxConns          = 10000
	DefaultMaxConnsPerSource = 64
	DefaultWriteTimeout      = 5 * time.Second
	DefaultDialTimeout       = 5 * time.Second
	DefaultReadBuffer        = 4 << 20
	DefaultReadBatch         = 32
	DefaultWSCloseWait       = time.Second
)

// maxReadBatch bounds Config.ReadBatch: Linux takes at most 1024
// messages in one recvmmsg (UIO_MAXIOV).
const maxReadBatch = 1024

// maxDatagram is the read buffer of a UDP socket: the largest UDP payload.
const maxDatagram = 65535

// Errors returned by the Manager and its connections.
var (
	// ErrClosed is returned by a Manager after Close.
	ErrClosed = errors.New("transport: manager closed")
	// ErrConnClosed is returned by Conn.Write once the connection is closed.
	ErrConnClosed = errors.New("transport: connection closed")
	// ErrTooManyConns is returned when a dial would exceed Config.MaxConns.
	ErrTooManyConns = errors.New("transport: too many connections")
	// ErrNoListener is returned by WriteTo over UDP when no listening socket
	// can send from the requested local address or to the remote's family.
	ErrNoListener = errors.New("transport: no matching UDP listener")
)

// Config is the transport configuration. Zero fields take the defaults
// named in their comments.
type Config struct {
	// MaxMessageSize is the largest stream message (header section and
	// body) delivered whole; a larger one is delivered as an Oversize
	// Packet and its connection closed. Default 65536. UDP datagrams are
	// always read up to 65535 bytes.
	MaxMessageSize int
	// IdleTimeout closes a stream connection that has received nothing for
	// this long. Default 5m.
	IdleTimeout time.Duration
	// MessageTimeout closes a stream connection on which a message (header
	// section and body) has not arrived whole this long after its first
	// byte, so a peer sending slowly but never finishing (slowloris) cannot
	// keep it open. Keep-alives between messages do not count. Default 30s.
	MessageTimeout time.Duration
	// MaxConns caps open stream connections, inbound and outbound together.
	// An accepted socket beyond it is closed at once; a dial beyond it
	// fails with ErrTooManyConns. Default 10000.
	MaxConns int
	// MaxConnsPerSource caps inbound stream connections from one remote IP
	// address; beyond it an accepted socket is closed at once. Default 64.
	MaxConnsPerSource int
	// WriteTimeout bounds one Conn.Write, so a peer that stops reading
	// never blocks a writer for longer. Default 5s.
	WriteTimeout time.Duration
	// DialTimeout bounds an outbound dial including its TLS handshake, and
	// the TLS handshake of an inbound connection. Default 5s.
	DialTimeout time.Duration
	// TLSConfig is the server side configuration; Listen("tls", ...) needs it.
	TLSConfig *tls.Config
	// TLSClientConfig is used for outbound TLS connections. Nil means the
	// system roots and TLS 1.2 or later. When its ServerName is empty the
	// name passed to Dial is used, else the remote IP address, which the
	// peer's certificate must then carry as an IP SAN.
	TLSClientConfig *tls.Config
	// Logger receives the transport's logs, with feature=transport. Nil
	// discards them.
	Logger *slog.Logger
	// STUN, when set, answers the STUN messages that arrive on UDP
	// listeners, so that a client behind NAT can learn its mapping on
	// the very port its SIP flow uses (RFC 5626 §4.4.2, RFC 7983 §7). A
	// datagram whose first byte is 0 to 3, with the magic cookie
	// 0x2112A442 in bytes 4-7 and a length field that accounts for the
	// rest of it, is not SIP (which begins with a letter): it goes to
	// STUN instead of the Handler. STUN appends its answer to dst and
	// returns it; nothing is sent when it returns dst unchanged. It runs
	// on the socket's reader goroutine, so it must be quick and must not
	// block (the answer is sent from that socket); local is the
	// listener's bound address, remote the source, IPv4 unmapped.
	STUN func(dst, req []byte, local, remote netip.AddrPort) []byte
	// Admit, when set, decides what the transport lets in, so that a flood
	// guard can drop a banned or over-limit source before anything is
	// copied or parsed. It is asked with the protocol (UDP, TCP, TLS) and
	// the source address, IPv4 unmapped: for every UDP datagram as soon as
	// it is read, before the STUN and keep-alive checks (false drops it);
	// for every accepted stream connection before it is registered or its
	// TLS handshake starts (false closes it); and for every frame read on
	// a stream connection, keep-alive pings included, before it reaches
	// the Handler (false drops it and closes the connection). Refusals are
	// counted (Stats Dropped and ConnsDropped). Admit runs on the reader
	// and accept goroutines, one call per datagram under a flood, so it
	// must be cheap, must not block and must be safe for concurrent use.
	Admit func(proto string, remote netip.AddrPort) bool
	// ReadBuffer is the receive buffer (SO_RCVBUF) asked for on UDP
	// sockets, in bytes, so that a burst, or a flood's legitimate
	// neighbours, wait in the kernel for the reader (and Admit) instead of
	// being dropped there. Linux caps it at net.core.rmem_max unless the
	// process may force it (CAP_NET_ADMIN), which is tried first. Default
	// 4 MiB.
	ReadBuffer int
	// WebSocket configures the ws and wss listeners (RFC 7118).
	WebSocket WebSocketConfig
	// Capture, when set, sees every SIP message the transport hands to
	// the Handler (whole UDP datagrams, stream and WebSocket messages) and
	// every message it sends (UDP datagrams, stream and WebSocket writes;
	// not keep-alives, STUN or Oversize/BadFraming input), for a packet
	// capture such as HEP (package capture/hep). out says the message went
	// from local to remote, else came from remote to local; proto is UDP,
	// TCP, TLS, WS or WSS, and data is the SIP message, decrypted. For UDP,
	// local is the listener's bound address, which may be a wildcard. It
	// runs synchronously on the reading or writing goroutine, received
	// messages before the Handler sees them and sent ones once written,
	// so it must be quick, must not block and must not keep data.
	Capture func(out bool, proto string, local, remote netip.AddrPort, data []byte)
	// ReadBatch is how many datagrams one read takes from a UDP socket on
	// Linux (one recvmmsg system call), at most 1024; each slot holds a
	// 64 KiB buffer, so a socket's reader holds ReadBatch times 64 KiB. 1
	// reads one datagram at a time, as other systems always do. Default
	// 32.
	ReadBatch int
	// WSCloseWait bounds how long Close waits, for all WebSocket peers at
	// once, for their answers to its going-away close frames; the
	// connections of peers that have not answered by then are cut, so a
	// peer that stops reading cannot hold a shutdown up. Default 1s.
	WSCloseWait time.Duration
}

// Validate reports the first field with a value New cannot use.
func (c Config) Validate() error {
	switch {
	case c.MaxMessageSize < 0:
		return fmt.Errorf("transport: MaxMessageSize %d is negative", c.MaxMessageSize)
	case c.IdleTimeout < 0:
		return fmt.Errorf("transport: IdleTimeout %s is negative", c.IdleTimeout)
	case c.MessageTimeout < 0:
		return fmt.Errorf("transport: MessageTimeout %s is negative", c.MessageTimeout)
	case c.MaxConns < 0:
		return fmt.Errorf("transport: MaxConns %d is negative", c.MaxConns)
	case c.MaxConnsPerSource < 0:
		return fmt.Errorf("transport: MaxConnsPerSource %d is negative", c.MaxConnsPerSource)
	case c.WriteTimeout < 0:
		return fmt.Errorf("transport: WriteTimeout %s is negative", c.WriteTimeout)
	case c.DialTimeout < 0:
		return fmt.Errorf("transport: DialTimeout %s is negative", c.DialTimeout)
	case c.ReadBuffer < 0:
		return fmt.Errorf("transport: ReadBuffer %d is negative", c.ReadBuffer)
	case c.ReadBatch < 0:
		return fmt.Errorf("transport: ReadBatch %d is negative", c.ReadBatch)
	case c.ReadBatch > maxReadBatch:
		return fmt.Errorf("transport: ReadBatch %d is over %d", c.ReadBatch, maxReadBatch)
	case c.WSCloseWait < 0:
		return fmt.Errorf("transport: WSCloseWait %s is negative", c.WSCloseWait)
	}
	return c.WebSocket.validate()
}

// withDefaults returns c with defaults for zero (and negative) fields.
func (c Config) withDefaults() Config {
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MessageTimeout <= 0 {
		c.MessageTimeout = DefaultMessageTimeout
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerSource <= 0 {
		c.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.ReadBatch <= 0 {
		c.ReadBatch = DefaultReadBatch
	}
	c.ReadBatch = min(c.ReadBatch, maxReadBatch)
	if c.WSCloseWait <= 0 {
		c.WSCloseWait = DefaultWSCloseWait
	}
	c.WebSocket = c.WebSocket.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Packet is one framed message handed to the Handler.
type Packet struct {
	// Data is exactly one message (one datagram for UDP). It is a fresh
	// allocation owned by the handler.
	Data []byte
	// Proto is UDP, TCP or TLS.
	Proto string
	// Local is the listener's bound address for UDP (it may be a wildcard
	// such as 0.0.0.0:5060), the connection's local address for streams.
	Local netip.AddrPort
	// Remote is the source address, IPv4 unmapped.
	Remote netip.AddrPort
	// Conn is the stream connection the message arrived on; nil for UDP.
	Conn *Conn
	// Oversize is set when a stream message exceeds Config.MaxMessageSize.
	// Data then holds the header section only (or, when the header section
	// itself is too long, its first MaxMessageSize+1 bytes), so a 513 can
	// be sent on Conn. The transport stops reading and closes the
	// connection after the first write on it or after WriteTimeout.
	Oversize bool
	// BadFraming is non-empty when a stream message's Content-Length is
	// unusable (negative, not a number, conflicting, or missing while a
	// Content-Type announces a body); it says why. Data holds the header
	// section so a 400 can be sent on Conn; the connection is then closed
	// as for Oversize.
	BadFraming string
}

// Handler receives framed messages.
type Handler interface {
	// HandlePacket is called from the transport's reader goroutines, one
	// per UDP socket and one per stream connection, so it must not block:
	// hand the packet to a worker and return.
	HandlePacket(p *Packet)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(*Packet)

// HandlePacket calls f(p).
func (f HandlerFunc) HandlePacket(p *Packet) { f(p) }

// connKey keys the connection table.
type connKey struct {
	proto  string
	remote netip.AddrPort
}

// dialCall is a dial in progress, shared by concurrent callers.
type dialCall struct {
	done chan struct{}
	conn *Conn
	err  error
}

// udpListener is one UDP socket.
type udpListener struct {
	pc     *net.UDPConn
	raw    *rawSender // nil: writes go through pc
	addr   netip.AddrPort
	family int // 4, 6, or 0 for a dual-stack socket
	// readBuffer is the SO_RCVBUF the kernel granted, 0 if unknown.
	readBuffer int
}

// streamListener is one TCP socket accepting TCP or TLS connections.
type streamListener struct {
	ln    net.Listener
	proto string
	addr  netip.AddrPort
	srv   *http.Server // the handshake server of a ws or wss listener
}

// Manager owns the listeners and connections of one server: it frames
// inbound messages for its Handler, keeps the connection table, enforces
// the limits, and sends. Its methods are safe for concurrent use.
type Manager struct {
	cfg     Config
	handler Handler
	log     *slog.Logger
	stats   [numProtos]protoCounters
	metrics []metricDef
	bufs    streamBufs // read buffers lent to stream connections while a message arrives

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Manager starts

	mu     sync.Mutex
	closed bool
	// udp are the UDP listeners, a slice replaced whole (under mu) when
	// one is added; udpClosed is closed as the senders see it. Both are
	// read without mu on every UDP send.
	udp       atomic.Pointer[[]*udpListener]
	udpClosed atomic.Bool
	streams   []*streamListener
	conns     map[*Conn]struct{}
	table     map[connKey]*Conn
	dials     map[connKey]*dialCall
	open      int // stream connections open or being dialed, for MaxConns
	perSource map[netip.Addr]int
}

// New returns a Manager delivering framed messages to h. Zero Config fields
// take their defaults (see Config.Validate to reject bad values early). A
// nil h drops inbound messages.
func New(cfg Config, h Handler) *Manager {
	cfg = cfg.withDefaults()
	if h == nil {
		h = HandlerFunc(func(*Packet) {})
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg:       cfg,
		handler:   h,
		log:       cfg.Logger.With("feature", "transport"),
		ctx:       ctx,
		cancel:    cancel,
		conns:     make(map[*Conn]struct{}),
		table:     make(map[connKey]*Conn),
		dials:     make(map[connKey]*dialCall),
		perSource: make(map[netip.Addr]int),
	}
	m.metrics = newMetricDefs()
	return m
}

// normalizeProto maps "udp", "Tcp", ... to UDP, TCP or TLS.
func normalizeProto(proto string) (string, error) {
	switch p := strings.ToUpper(proto); p {
	case UDP, TCP, TLS, WS, WSS:
		return p, nil
	}
	return "", fmt.Errorf("transport: unknown protocol %q", proto)
}

// listenNetwork picks "udp4"/"tcp4" for an IPv4 literal host and
// "udp6"/"tcp6" (IPv6 only) for an IPv6 one, so IPv4 and IPv6 listeners can
// share a port; other hosts get the dual-stack network.
func listenNetwork(base, addr string) (network string, family int, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Unmap().Is4() {
			return base + "4", 4, nil
		}
		return base + "6", 6, nil
	}
	return base, 0, nil
}

// Listen opens a listener for proto ("udp", "tcp" or "tls", any case) on
// addr (host:port; port 0 picks one) and starts serving it. It returns the
// bound address. An IPv4 literal host binds IPv4 only and an IPv6 literal
// IPv6 only, so "0.0.0.0:5060" and "[::]:5060" can both be opened.
func (m *Manager) Listen(proto, addr string) (net.Addr, error) {
	p, err := normalizeProto(proto)
	if err != nil {
		return nil, err
	}
	if (p == TLS || p == WSS) && m.cfg.TLSConfig == nil {
		return nil, fmt.Errorf("transport: listen %s %s: Config.TLSConfig is nil", strings.ToLower(p), addr)
	}
	if m.ctx.Err() != nil {
		return nil, ErrClosed
	}
	var lc net.ListenConfig
	switch p {
	case WS, WSS:
		return m.listenWS(&lc, p, addr)
	case UDP:
		network, family, err := listenNetwork("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("transport: listen udp %s: %w", addr, err)
		}
		pc, err := lc.ListenPacket(m.ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("transport: listen udp %s: %w", addr, err)
		}
		l := &udpListener{pc: pc.(*net.UDPConn), addr: addrPortOf(pc.LocalAddr()), family: family}
		l.raw = newRawSender(l.pc)
		m.sizeReadBuffer(l)
		if family == 0 { // a host name or an empty host: go by what was bound
			switch ip := l.addr.Addr(); {
			case ip.Is4():
				l.family = 4
			case !ip.IsUnspecified():
				l.family = 6
			}
		}
		add := func() {
			udps := append(m.udpListeners(), l)
			m.udp.Store(&udps)
		}
		if err := m.serveListener(pc, p, l.addr, add, func() { m.readUDP(l) }); err != nil {
			return nil, err
		}
		return pc.LocalAddr(), nil
	default:
		network, _, err := listenNetwork("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("transport: listen %s %s: %w", strings.ToLower(p), addr, err)
		}
		ln, err := lc.Listen(m.ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("transport: listen %s %s: %w", strings.ToLower(p), addr, err)
		}
		l := &streamListener{ln: ln, proto: p, addr: addrPortOf(ln.Addr())}
		if err := m.serveListener(ln, p, l.addr, func() { m.streams = append(m.streams, l) }, func() { m.acceptLoop(l) }); err != nil {
			return nil, err
		}
		return ln.Addr(), nil
	}
}

// serveListener records a socket Listen opened (add runs with m.mu held)
// and starts serve in a counted goroutine. If the Manager closed meanwhile
// it closes sock instead and returns ErrClosed.
func (m *Manager) serveListener(sock io.Closer, proto string, addr netip.AddrPort, add, serve func()) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		sock.Close()
		return ErrClosed
	}
	add()
	m.wg.Add(1)
	m.mu.Unlock()
	m.log.Info("listening", "proto", proto, "addr", addr.String())
	go serve()
	return nil
}

// acceptLoop accepts connections until the listener is closed.
func (m *Manager) acceptLoop(l *streamListener) {
	defer m.wg.Done()
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || m.ctx.Err() != nil {
				return
			}
			// Out of descriptors or similar: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("accept failed", "proto", l.proto, "addr", l.addr.String(), "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-m.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		m.accept(l, nc)
	}
}

// accept admits or rejects one inbound connection.
func (m *Manager) accept(l *streamListener, nc net.Conn) {
	remote := addrPortOf(nc.RemoteAddr())
	local := addrPortOf(nc.LocalAddr())
	st := &m.stats[protoIndex(l.proto)]
	if m.cfg.Admit != nil && !m.cfg.Admit(l.proto, remote) {
		st.connsDropped.Add(1)
		nc.Close()
		m.log.Debug("connection refused by admit", "proto", l.proto, "remote", remote.String())
		return
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		nc.Close()
		return
	}
	if m.open >= m.cfg.MaxConns || m.perSource[remote.Addr()] >= m.cfg.MaxConnsPerSource {
		total, fromSource := m.open, m.perSource[remote.Addr()]
		m.mu.Unlock()
		st.connsRejected.Add(1)
		nc.Close()
		m.log.Debug("connection rejected", "proto", l.proto, "remote", remote.String(),
			"open", total, "open_from_source", fromSource)
		return
	}
	m.open++
	m.perSource[remote.Addr()]++
	c := newConn(m, l.proto, nc, local, remote, true)
	m.conns[c] = struct{}{}
	if c.tls == nil {
		m.addKeyLocked(c, connKey{l.proto, remote})
	} // a TLS connection enters the table after its handshake
	m.wg.Add(1)
	st.connsAccepted.Add(1)
	st.connsOpen.Add(1)
	m.mu.Unlock()
	m.log.Debug("connection accepted", "proto", l.proto, "remote", remote.String(), "local", local.String())
	go m.serveConn(c)
}

// addKeyLocked points key at c. m.mu must be held.
func (m *Manager) addKeyLocked(c *Conn, k connKey) {
	m.table[k] = c
	for _, have := range c.keys {
		if have == k {
			return
		}
	}
	c.keys = append(c.keys, k)
}

// removeKeysLocked drops every table entry that points at c. m.mu must be
// held.
func (m *Manager) removeKeysLocked(c *Conn) {
	for _, k := range c.keys {
		if m.table[k] == c {
			delete(m.table, k)
		}
	}
	c.keys = nil
}

// register puts an inbound TLS connection into the table once its
// handshake is done. It reports false if the connection is closed.
func (m *Manager) register(c *Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.isClosed() {
		return false
	}
	m.addKeyLocked(c, connKey{c.proto, c.remote})
	return true
}

// release forgets a closed connection.
func (m *Manager) release(c *Conn) {
	m.mu.Lock()
	m.removeKeysLocked(c)
	delete(m.conns, c)
	if !c.gated { // a gatedConn gives a WebSocket's slot back itself
		m.open--
	}
	if c.inbound && !c.gated {
		ip := c.remote.Addr()
		if m.perSource[ip]--; m.perSource[ip] <= 0 {
			delete(m.perSource, ip)
		}
	}
	m.stats[protoIndex(c.proto)].connsOpen.Add(-1)
	m.mu.Unlock()
}

// Lookup returns the open connection the table holds for proto ("tcp",
// "tls", any case) and remote, by its remote address or an Alias, or nil.
func (m *Manager) Lookup(proto string, remote netip.AddrPort) *Conn {
	p, err := normalizeProto(proto)
	if err != nil {
		return nil
	}
	m.mu.Lock()
	c := m.table[connKey{p, unmap(remote)}]
	m.mu.Unlock()
	if c == nil || c.isClosed() {
		return nil
	}
	return c
}

// Alias makes c reachable in the table under (proto, alias) too, for
// instance the sent-by of a Via it carried (RFC 5923), until c closes. A
// later connection or alias for the same key replaces it.
func (m *Manager) Alias(proto string, alias netip.AddrPort, c *Conn) {
	p, err := normalizeProto(proto)
	if err != nil || c == nil || c.m != m {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.isClosed() || c.lingering.Load() {
		return
	}
	m.addKeyLocked(c, connKey{p, unmap(alias)})
}

// Dial returns the open connection for (proto, remote) from the table, or
// opens one: over TCP, or TLS with Config.TLSClientConfig verifying
// serverName (the remote IP when empty). A new connection enters the table
// and is read like an accepted one, so whatever the peer sends on it
// reaches the Handler. A valid, specified local address binds the local
// side (its port is ignored). Concurrent dials to one key share one
// connection.
func (m *Manager) Dial(ctx context.Context, proto string, local, remote netip.AddrPort, serverName string) (*Conn, error) {
	p, err := normalizeProto(proto)
	if err != nil {
		return nil, err
	}
	if p == UDP {
		return nil, fmt.Errorf("transport: dial %s: UDP has no connections", remote)
	}
	if isWebSocket(p) {
		// The server never dials a WebSocket: a browser's messages go
		// over the connection it opened, or nowhere.
		if c := m.Lookup(p, remote); c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("transport: %s %s: %w", strings.ToLower(p), remote, ErrNoConnection)
	}
	remote = unmap(remote)
	if !remote.IsValid() {
		return nil, fmt.Errorf("transport: dial %s: invalid remote address", remote)
	}
	k := connKey{p, remote}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		if c := m.table[k]; c != nil && !c.isClosed() {
			m.mu.Unlock()
			return c, nil
		}
		if d := m.dials[k]; d != nil {
			m.mu.Unlock()
			select {
			case <-d.done:
				if d.err != nil && !(errors.Is(d.err, context.Canceled) && ctx.Err() == nil) {
					return nil, d.err
				}
				// Take it from the table, or dial again if it died already
				// or its dial was canceled by its own caller.
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("transport: dial %s %s: %w", strings.ToLower(p), remote, ctx.Err())
			}
		}
		if m.open >= m.cfg.MaxConns {
			m.mu.Unlock()
			m.stats[protoIndex(p)].dialErrors.Add(1)
			return nil, fmt.Errorf("transport: dial %s %s: %w", strings.ToLower(p), remote, ErrTooManyConns)
		}
		d := &dialCall{done: make(chan struct{})}
		m.dials[k] = d
		m.open++
		m.mu.Unlock()

		d.conn, d.err = m.dial(ctx, p, local, remote, serverName)
		m.mu.Lock()
		delete(m.dials, k)
		close(d.done)
		m.mu.Unlock()
		return d.conn, d.err
	}
}

// dial opens, registers and starts reading one outbound connection. Its
// MaxConns slot is already taken.
func (m *Manager) dial(ctx context.Context, proto string, local, remote netip.AddrPort, serverName string) (*Conn, error) {
	st := &m.stats[protoIndex(proto)]
	fail := func(err error) (*Conn, error) {
		m.mu.Lock()
		m.open--
		m.mu.Unlock()
		st.dialErrors.Add(1)
		m.log.Debug("dial failed", "proto", proto, "remote", remote.String(), "err", err)
		return nil, fmt.Errorf("transport: dial %s %s: %w", strings.ToLower(proto), remote, err)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()

	var d net.Dialer
	if la := local.Addr().Unmap(); la.IsValid() && !la.IsUnspecified() && la.Is4() == remote.Addr().Is4() {
		d.LocalAddr = &net.TCPAddr{IP: la.AsSlice(), Zone: la.Zone()}
	}
	nc, err := d.DialContext(ctx, "tcp", remote.String())
	if err != nil {
		return fail(err)
	}
	if proto == TLS {
		cfg := m.cfg.TLSClientConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = serverName
		}
		if cfg.ServerName == "" {
			cfg.ServerName = remote.Addr().WithZone("").String()
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return fail(err)
		}
		nc = tc
	}
	c := newConn(m, proto, nc, addrPortOf(nc.LocalAddr()), remote, false)
	c.setPeerNames()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.raw.Close()
		return fail(ErrClosed)
	}
	m.conns[c] = struct{}{}
	m.addKeyLocked(c, connKey{proto, remote})
	m.wg.Add(1)
	st.connsDialed.Add(1)
	st.connsOpen.Add(1)
	m.mu.Unlock()
	m.log.Debug("connection dialed", "proto", proto, "remote", remote.String(), "local", c.local.String())
	go m.serveConn(c)
	return c, nil
}

// WriteTo sends one message. Over UDP it leaves from the listening socket
// bound to local (a wildcard listener on local's port also matches), or
// with a zero local from the first UDP listener that can reach remote's
// address family. Over TCP and TLS it reuses the table's connection for
// remote, else dials one (see Dial); local then only binds the local IP.
func (m *Manager) WriteTo(proto string, local, remote netip.AddrPort, data []byte) error {
	p, err := normalizeProto(proto)
	if err != nil {
		return err
	}
	if p == UDP {
		return m.writeUDP(local, unmap(remote), data)
	}
	for attempt := 0; ; attempt++ {
		c, err := m.Dial(m.ctx, p, local, remote, "")
		if err != nil {
			return err
		}
		err = c.Write(data)
		// A connection that closed between the lookup and the write sent
		// nothing: dial once more.
		if errors.Is(err, ErrConnClosed) && attempt == 0 {
			continue
		}
		return err
	}
}

// writeUDP sends one datagram.
func (m *Manager) writeUDP(local, remote netip.AddrPort, data []byte) error {
	l, err := m.udpListenerFor(local, remote)
	if err != nil {
		return err
	}
	n, again := 0, true
	if l.raw != nil {
		n, again, err = l.raw.send(data, remote)
	}
	if again {
		n, err = l.pc.WriteToUDPAddrPort(data, remote)
	}
	if err != nil {
		return m.udpWriteFailed(l, remote, err)
	}
	m.udpSent(l, remote, data, n)
	return nil
}

// udpListenerFor picks the socket a datagram from local to remote (already
// unmapped) leaves from, one rule for writeUDP and Batch: the listener
// bound to local (a wildcard one on local's port also matches), or with
// a zero local the first that can reach remote's family. Its errors are
// WriteTo's: an invalid remote, a closed Manager, no such listener.
func (m *Manager) udpListenerFor(local, remote netip.AddrPort) (*udpListener, error) {
	if !remote.IsValid() {
		return nil, fmt.Errorf("transport: write udp %s: invalid remote address", remote)
	}
	local = unmap(local)
	// The listeners as last recorded, read without m.mu: every worker
	// sends, and a mutex they all take would serialise them.
	if m.udpClosed.Load() {
		return nil, ErrClosed
	}
	for _, u := range m.udpListeners() {
		if local.IsValid() {
			if u.addr == local || (u.addr.Addr().IsUnspecified() && u.addr.Port() == local.Port() && u.reaches(local.Addr())) {
				return u, nil
			}
		} else if u.reaches(remote.Addr()) {
			return u, nil
		}
	}
	m.stats[protoIndex(UDP)].writeErrors.Add(1)
	return nil, fmt.Errorf("transport: write udp %s from %s: %w", remote, local, ErrNoListener)
}

// udpSent counts a datagram of n bytes sent from l and shows it to
// Capture, whichever way it went out.
func (m *Manager) udpSent(l *udpListener, remote netip.AddrPort, data []byte, n int) {
	st := &m.stats[protoIndex(UDP)]
	st.packetsOut.Add(1)
	st.bytesOut.Add(uint64(n))
	if m.cfg.Capture != nil {
		m.cfg.Capture(true, UDP, l.addr, remote, data)
	}
}

// udpWriteFailed counts a datagram l could not send and says which.
func (m *Manager) udpWriteFailed(l *udpListener, remote netip.AddrPort, err error) error {
	m.stats[protoIndex(UDP)].writeErrors.Add(1)
	return fmt.Errorf("transport: write udp %s from %s: %w", remote, l.addr, err)
}

// udpListeners returns the UDP listeners; the slice is never changed,
// only replaced (a full slice expression keeps an append from writing
// into it).
func (m *Manager) udpListeners() []*udpListener {
	if p := m.udp.Load(); p != nil {
		return (*p)[:len(*p):len(*p)]
	}
	return nil
}

// reaches reports whether the socket can send to (or be bound to) ip.
func (u *udpListener) reaches(ip netip.Addr) bool {
	switch u.family {
	case 4:
		return ip.Is4()
	case 6:
		return ip.Is6()
	}
	return true
}

// readUDP reads datagrams until the socket is closed. Admit sees each
// one before anything else is done with it; one the Handler gets costs
// one allocation (see newPacket), one refused costs none.
func (m *Manager) readUDP(l *udpListener) {
	defer m.wg.Done()
	st := &m.stats[protoIndex(UDP)]
	r := newDatagramReader(l.pc, m.cfg.ReadBatch)
	admit, capture := m.cfg.Admit, m.cfg.Capture
	var out []byte // STUN answers; allocated on the first
	// Counts of the current batch, added to st before each packet is
	// handed on and after the batch: one atomic add per batch under a
	// flood, yet Stats never lags behind what the Handler has seen.
	var bytesIn, packetsIn, dropped uint64
	flush := func() {
		if bytesIn != 0 {
			st.bytesIn.Add(bytesIn)
		}
		if packetsIn != 0 {
			st.packetsIn.Add(packetsIn)
		}
		if dropped != 0 {
			st.dropped.Add(dropped)
		}
		bytesIn, packetsIn, dropped = 0, 0, 0
	}
	for {
		k, err := r.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || m.ctx.Err() != nil {
				return
			}
			m.log.Debug("udp read failed", "addr", l.addr.String(), "err", err)
		}
		if k > 0 {
			st.reads.Add(1)
		}
		for i := range k {
			b, src := r.datagram(i)
			src = unmap(src)
			bytesIn += uint64(len(b))
			if !src.IsValid() { // no address to judge or answer
				continue
			}
			if admit != nil && !admit(UDP, src) {
				dropped++
				continue
			}
			if len(b) == 0 {
				continue
			}
			if b[0] < 4 && m.cfg.STUN != nil && isSTUN(b) {
				out = m.answerSTUN(l, out[:0], b, src)
				continue
			}
			if onlyCRLF(b) { // RFC 5626 §3.5.1 style keep-alive: no reply on UDP
				st.keepalives.Add(1)
				continue
			}
			packetsIn++
			flush()
			if capture != nil {
				capture(false, UDP, l.addr, src, b)
			}
			p := newPacket(b)
			p.Proto, p.Local, p.Remote = UDP, l.addr, src
			m.handler.HandlePacket(p)
		}
		flush()
	}
}

// stunCookie is bytes 4-7 of every RFC 5389/8489 STUN message.
const stunCookie = 0x2112A442

// isSTUN reports whether a datagram is framed as a STUN message (RFC 8489
// §5, RFC 7983 §7): first byte 0 to 3, the magic cookie, and a length, a
// multiple of 4, that accounts for the rest of it exactly.
func isSTUN(b []byte) bool {
	if len(b) < 20 || b[0] > 3 || binary.BigEndian.Uint32(b[4:8]) != stunCookie {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	return n%4 == 0 && 20+n == len(b)
}

// answerSTUN hands a STUN datagram to Config.STUN and sends its answer
// back from the socket it came on; src is unmapped. It returns the answer
// buffer for reuse.
func (m *Manager) answerSTUN(l *udpListener, out, req []byte, src netip.AddrPort) []byte {
	st := &m.stats[protoIndex(UDP)]
	st.stunIn.Add(1)
	out = m.cfg.STUN(out, req, l.addr, src)
	if len(out) == 0 {
		return out
	}
	n, err := l.pc.WriteToUDPAddrPort(out, src)
	if err != nil {
		st.writeErrors.Add(1)
		m.log.Debug("stun answer failed", "addr", l.addr.String(), "to", src.String(), "err", err)
		return out
	}
	st.stunOut.Add(1)
	st.bytesOut.Add(uint64(n))
	return out
}

// onlyCRLF reports whether b holds nothing but CR and LF bytes.
func onlyCRLF(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// Close closes every listener and connection and waits until every
// goroutine the Manager started has returned. Later calls return nil.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.wg.Wait()
		return nil
	}
	m.closed = true
	m.udpClosed.Store(true)
	udps, streams := m.udpListeners(), m.streams
	conns := make([]*Conn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	m.mu.Unlock()

	m.cancel()
	var errs []error
	for _, l := range udps {
		if l.raw != nil {
			l.raw.close() // no raw send on the descriptor from here on
		}
		if err := l.pc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, l := range streams {
		if l.srv != nil {
			// Closes the listener and the connections still in their
			// handshake; upgraded ones are in conns.
			l.srv.Close()
			continue
		}
		if err := l.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	goneAway := m.goAway(conns)
	for _, c := range conns {
		c.closeWith("manager closed")
	}
	goneAway()
	m.wg.Wait()
	m.log.Info("closed")
	return errors.Join(errs...)
}

// addrPortOf converts a TCP or UDP net.Addr, unmapping IPv4.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return unmap(a.AddrPort())
	case *net.UDPAddr:
		return unmap(a.AddrPort())
	}
	return netip.AddrPort{}
}

// unmap turns ::ffff:a.b.c.d into a.b.c.d, keeping the port.
func unmap(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}
