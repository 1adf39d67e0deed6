// Package rtpengine is a media.Engine that hands the media of calls to an
// external rtpengine (github.com/sipwise/rtpengine) over its NG control
// protocol: bencoded dictionaries over UDP, each request prefixed by a
// cookie that its reply repeats.
//
// One UDP socket talks to one rtpengine. A reader goroutine matches
// replies to the waiting requests by cookie; a request that gets no reply
// is sent again, byte for byte with the same cookie: rtpengine remembers
// the replies it sent by cookie and answers a retransmission from that
// cache instead of executing it twice, so a retry of an offer does not
// allocate a second set of ports.
package rtpengine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/internal/bencode"
	"github.com/hlas-voip/hlas/media"
)

// Config configures a Client; the zero value of each field is its
// documented default.
type Config struct {
	// Address is rtpengine's NG control socket (its --listen-ng):
	// "udp:HOST:PORT" or "HOST:PORT", an IPv6 address in brackets. A
	// host name is resolved once, by New. Default "udp:127.0.0.1:2223".
	Address string `yaml:"address"`
	// Timeout is how long one attempt waits for the reply before the
	// request is sent again. rtpengine answers in about a millisecond;
	// the default 500ms covers a loaded daemon while the whole wait (all
	// attempts, 1.5s by default) stays well under a SIP client's
	// transaction timeout. The caller's context bounds it further.
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is how many times a request is sent (the first time and
	// the retransmissions) before the engine is reported unavailable.
	// Default 3.
	Attempts int `yaml:"attempts"`
	// Flags are extra NG flags for every offer and answer, after the
	// client's own (so "trust-address" or "SIP-source-address" here
	// overrides the client's choice): e.g. "strict-source".
	Flags []string `yaml:"flags"`
	// DeleteDelay is the "delete-delay" sent with a delete: 0 (default)
	// stops relaying at once, as media.Engine's Delete promises; a
	// positive value keeps rtpengine relaying that long (whole seconds,
	// rounded up); negative leaves it to rtpengine's --delete-delay.
	DeleteDelay time.Duration `yaml:"delete_delay"`
	// MaxPending bounds the requests waiting for a reply; one more fails
	// at once with media.ErrUnavailable instead of queueing behind a
	// daemon that does not answer. Default 256.
	MaxPending int `yaml:"max_pending"`
	// MaxCalls bounds the calls whose caller tag the client remembers to
	// split the statistics of a delete by direction (and to time the
	// call). Past it the oldest is forgotten; its Delete still ends it,
	// with empty Stats. Default 65536.
	MaxCalls int `yaml:"max_calls"`
	// OnTimeout hears of the calls rtpengine ended itself: its --timeout
	// (no media for that long) deletes a call without telling anyone, so
	// the client asks about each call it knows every PollInterval and
	// reports the ones rtpengine no longer has, for the proxy to end with
	// a BYE to each side. Nil: no polling.
	OnTimeout func(media.Timeout) `yaml:"-"`
	// PollInterval is how often each known call is queried for OnTimeout.
	// Default 10s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Logger receives the logs, with feature=rtpengine. Nil discards them.
	Logger *slog.Logger `yaml:"-"`
	// Registerer gets the metrics (hlas_rtpengine_*). Nil skips them.
	Registerer prometheus.Registerer `yaml:"-"`
}

const (
	defaultAddress    = "127.0.0.1:2223"
	defaultTimeout    = 500 * time.Millisecond
	defaultAttempts   = 3
	defaultMaxPending = 256
	defaultMaxCalls   = 65536
	// defaultPollInterval: a call rtpengine timed out is ended within
	// that much after its --timeout.
	defaultPollInterval = 10 * time.Second
	// maxDatagram is the largest UDP payload: a request that does not fit
	// cannot be sent, a reply cannot be longer.
	maxDatagram = 65507
	// maxCookie bounds the cookie of a reply; ours are 20-odd bytes.
	maxCookie = 64
)

// Client is an rtpengine NG client and a media.Engine. Safe for
// concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	met    *metrics
	conn   *net.UDPConn
	remote string

	// prefix makes the cookies of this Client unique among all clients
	// of the daemon, past and present: rtpengine answers a cookie it saw
	// recently from its cache, whoever sends it.
	prefix string
	seq    atomic.Uint64
	slots  chan struct{} // MaxPending tokens

	mu      sync.Mutex
	pending map[string]chan []byte // by cookie: the reply's document

	calls callTable

	closed     chan struct{}
	closeOnce  sync.Once
	readerDone chan struct{}
	pollerDone chan struct{} // nil without OnTimeout
}

var _ media.Engine = (*Client)(nil)

// New opens the control socket and starts the reader. It does not wait
// for rtpengine: Ping does.
func New(cfg Config) (*Client, error) {
	if cfg.Address == "" {
		cfg.Address = defaultAddress
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = defaultAttempts
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = defaultMaxPending
	}
	if cfg.MaxCalls == 0 {
		cfg.MaxCalls = defaultMaxCalls
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = defaultPollInterval
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("rtpengine: timeout %v is negative", cfg.Timeout)
	case cfg.Attempts < 0:
		return nil, fmt.Errorf("rtpengine: attempts %d is negative", cfg.Attempts)
	case cfg.MaxPending < 0:
		return nil, fmt.Errorf("rtpengine: max_pending %d is negative", cfg.MaxPending)
	case cfg.MaxCalls < 0:
		return nil, fmt.Errorf("rtpengine: max_calls %d is negative", cfg.MaxCalls)
	case cfg.PollInterval < 0:
		return nil, fmt.Errorf("rtpengine: poll_interval %v is negative", cfg.PollInterval)
	}
	for _, f := range cfg.Flags {
		if f == "" {
			return nil, errors.New("rtpengine: empty entry in flags")
		}
	}
	hostport, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", hostport)
	if err != nil {
		return nil, fmt.Errorf("rtpengine: address %q: %w", cfg.Address, err)
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("rtpengine: %w", err)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rtpengine: cookie prefix: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg:        cfg,
		log:        log.With("feature", "rtpengine", "rtpengine", raddr.String()),
		conn:       conn,
		remote:     raddr.String(),
		prefix:     "hlas" + hex.EncodeToString(rnd[:]) + "_",
		slots:      make(chan struct{}, cfg.MaxPending),
		pending:    map[string]chan []byte{},
		closed:     make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	c.calls.init(cfg.MaxCalls)
	c.met = newMetrics(c)
	if cfg.Registerer != nil {
		if err := c.met.register(cfg.Registerer); err != nil {
			conn.Close()
			return nil, fmt.Errorf("rtpengine: metrics: %w", err)
		}
	}
	go c.read()
	if cfg.OnTimeout != nil {
		c.pollerDone = make(chan struct{})
		go c.poll()
	}
	return c, nil
}

// parseAddress turns Config.Address into host:port for the resolver.
func parseAddress(a string) (string, error) {
	hostport := strings.TrimPrefix(a, "udp:")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("rtpengine: address %q: want udp:HOST:PORT: %w", a, err)
	}
	if host == "" {
		return "", fmt.Errorf("rtpengine: address %q has no host", a)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("rtpengine: address %q: port %q is not 1-65535", a, port)
	}
	return hostport, nil
}

// Close stops the client: waiting requests fail, the socket closes. The
// calls stay in rtpengine, which goes on relaying them until they are
// deleted or its own --timeout ends them, so that a restart of the
// server does not cut the media of the calls in progress.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.pollerDone != nil {
			<-c.pollerDone // before the socket closes: its queries end
		}
		err = c.conn.Close()
		<-c.readerDone
	})
	return err
}

// read is the reader goroutine: it hands each reply to the request
// waiting for its cookie. It exits when the socket is closed.
func (c *Client) read() {
	defer close(c.readerDone)
	buf := make([]byte, maxDatagram+1)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// An ICMP port unreachable for an earlier request shows up
			// here on a connected socket: rtpengine is down; the waiting
			// requests time out and retransmit.
			c.met.readErrors.Inc()
			if !errors.Is(err, syscall.ECONNREFUSED) {
				c.log.Warn("read from rtpengine", "err", err)
				select { // no spinning on an error that repeats
				case <-c.closed:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			continue
		}
		cookie, doc, ok := splitCookie(buf[:n])
		if !ok {
			c.met.stray.Inc()
			c.log.Debug("datagram without a cookie from rtpengine", "bytes", n)
			continue
		}
		c.mu.Lock()
		ch := c.pending[string(cookie)]
		c.mu.Unlock()
		if ch == nil {
			// A reply to a retransmission that came after the first
			// reply, or to a request that gave up.
			c.met.stray.Inc()
			continue
		}
		select {
		case ch <- append([]byte(nil), doc...):
		default: // a second reply to the same cookie: the first counts
			c.met.stray.Inc()
		}
	}
}

// splitCookie splits "cookie SP document".
func splitCookie(b []byte) (cookie, doc []byte, ok bool) {
	for i, ch := range b {
		if ch == ' ' {
			if i == 0 {
				return nil, nil, false
			}
			return b[:i], b[i+1:], true
		}
		if i >= maxCookie || ch <= ' ' || ch > '~' {
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// Result values of the requests metric.
const (
	resultOK        = "ok"
	resultError     = "error"   // rtpengine answered "error"
	resultTimeout   = "timeout" // no reply after all attempts
	resultBusy      = "busy"    // MaxPending requests already waiting
	resultCanceled  = "canceled"
	resultClosed    = "closed"
	resultBadReply  = "bad_reply"
	resultLoadLimit = "load_limit"
	resultInvalid   = "invalid" // the request cannot be sent (too large)
)

// ReplyError is an NG reply with result "error": rtpengine refused the
// request. It wraps the media error it corresponds to, if any.
type ReplyError struct {
	// Command is the NG command refused: offer, answer, delete, ...
	Command string
	// Reason is the reply's error-reason, as rtpengine wrote it.
	Reason string
	kind   error
}

func (e *ReplyError) Error() string {
	return "rtpengine: " + e.Command + ": " + e.Reason
}

// Unwrap returns the media error of the reason: media.ErrNoSession,
// media.ErrBadSDP, media.ErrNoPorts, or nil.
func (e *ReplyError) Unwrap() error { return e.kind }

// reasonKinds maps rtpengine's error reasons (daemon/call_interfaces.c)
// to media errors, so that the proxy answers them as it answers the
// built-in relay's.
var reasonKinds = map[string]error{
	"Unknown call-id":                        media.ErrNoSession,
	"Unknown call-ID":                        media.ErrNoSession,
	"Call-ID not found or tags didn't match": media.ErrNoSession,
	"Failed to parse SDP":                    media.ErrBadSDP,
	"Incomplete SDP specification":           media.ErrBadSDP,
	"No SDP body in message":                 media.ErrBadSDP,
	"Ran out of ports":                       media.ErrNoPorts,
	"Parallel session limit reached":         media.ErrNoPorts,
}

// request sends the dictionary d as command and returns the reply's
// dictionary when its result is "ok" (or "pong").
func (c *Client) request(ctx context.Context, command string, d map[string]any) (map[string]any, error) {
	start := time.Now()
	reply, result, err := c.exchange(ctx, command, d)
	c.met.requests.WithLabelValues(command, result).Inc()
	if result == resultOK || result == resultError || result == resultLoadLimit {
		c.met.latency.WithLabelValues(command).Observe(time.Since(start).Seconds())
	}
	return reply, err
}

func (c *Client) exchange(ctx context.Context, command string, d map[string]any) (map[string]any, string, error) {
	d["command"] = command
	cookie := c.prefix + strconv.FormatUint(c.seq.Add(1), 36)
	msg := append([]byte(cookie), ' ')
	msg, err := bencode.Append(msg, d)
	if err != nil {
		return nil, resultInvalid, fmt.Errorf("rtpengine: %s: %w", command, err)
	}
	if len(msg) > maxDatagram {
		return nil, resultInvalid, fmt.Errorf("rtpengine: %s: request of %d bytes does not fit a datagram", command, len(msg))
	}
	if err := ctx.Err(); err != nil {
		return nil, resultCanceled, fmt.Errorf("rtpengine: %s: %w: %w", command, media.ErrUnavailable, err)
	}
	select {
	case c.slots <- struct{}{}:
	default:
		return nil, resultBusy, fmt.Errorf("rtpengine: %s: %d requests already waiting: %w", command, c.cfg.MaxPending, media.ErrUnavailable)
	}
	defer func() { <-c.slots }()

	ch := make(chan []byte, 1)
	c.mu.Lock()
	c.pending[cookie] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, cookie)
		c.mu.Unlock()
	}()

	timer := time.NewTimer(c.cfg.Timeout)
	defer timer.Stop()
	var doc []byte // the reply, less its cookie
wait:
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			c.met.retransmissions.WithLabelValues(command).Inc()
			c.log.Debug("retransmitting", "command", command, "cookie", cookie, "attempt", attempt)
		}
		if _, err := c.conn.Write(msg); err != nil {
			// A refused or failed write is a lost request: wait out the
			// attempt as for a lost reply.
			c.log.Debug("write to rtpengine", "command", command, "err", err)
		}
		timer.Reset(c.cfg.Timeout)
		select {
		case doc = <-ch:
			break wait
		case <-timer.C:
			if attempt >= c.cfg.Attempts {
				c.log.Warn("no reply from rtpengine", "command", command, "attempts", attempt)
				return nil, resultTimeout, fmt.Errorf("rtpengine: %s: no reply after %d attempts of %v: %w",
					command, attempt, c.cfg.Timeout, media.ErrUnavailable)
			}
		case <-ctx.Done():
			return nil, resultCanceled, fmt.Errorf("rtpengine: %s: %w: %w", command, media.ErrUnavailable, ctx.Err())
		case <-c.closed:
			return nil, resultClosed, fmt.Errorf("rtpengine: %s: client closed: %w", command, media.ErrUnavailable)
		}
	}

	v, err := bencode.Decode(doc)
	if err != nil {
		c.log.Warn("malformed reply from rtpengine", "command", command, "err", err)
		return nil, resultBadReply, fmt.Errorf("rtpengine: %s: malformed reply: %v: %w", command, err, media.ErrUnavailable)
	}
	reply, ok := v.(map[string]any)
	if !ok {
		return nil, resultBadReply, fmt.Errorf("rtpengine: %s: reply is not a dictionary: %w", command, media.ErrUnavailable)
	}
	switch res, _ := reply["result"].(string); res {
	case "ok", "pong":
		if w, ok := reply["warning"].(string); ok {
			c.log.Info("rtpengine warning", "command", command, "warning", w)
		}
		return reply, resultOK, nil
	case "error":
		reason, _ := reply["error-reason"].(string)
		if reason == "" {
			reason = "error without a reason"
		}
		return nil, resultError, &ReplyError{Command: command, Reason: reason, kind: reasonKinds[reason]}
	case "load limit":
		// Only sent to clients announcing "supports: load limit"; we do
		// not, but a daemon that sends it is full all the same.
		msg, _ := reply["message"].(string)
		return nil, resultLoadLimit, &ReplyError{Command: command, Reason: "load limit " + msg, kind: media.ErrNoPorts}
	default:
		return nil, resultBadReply, fmt.Errorf("rtpengine: %s: reply with result %q: %w", command, res, media.ErrUnavailable)
	}
}

// Ping checks that rtpengine answers.
func (c *Client) Ping(ctx context.Context) error {
	reply, err := c.request(ctx, "ping", map[string]any{})
	if err != nil {
		return err
	}
	if reply["result"] != "pong" {
		return fmt.Errorf("rtpengine: ping answered %q, not pong: %w", reply["result"], media.ErrUnavailable)
	}
	return nil
}
