// Package transaction implements the SIP transaction layer: the INVITE and
// non-INVITE client and server state machines of RFC 3261 §17 as amended
// by RFC 6026, their timers, and the matching of requests and responses to
// transactions.
//
// Every timer value and the clock belong to a Layer instance; tests use a
// FakeClock so that the 32-second timers of the RFC run in microseconds.
package transaction

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/sip"
)

// Sender delivers the messages of one transaction: responses back to the
// peer that sent the request (server side), requests to the chosen next
// hop (client side). The transport behind it decides whether timers that
// only exist for unreliable transports run.
type Sender interface {
	Send(m sip.Message) error
	// Reliable reports a reliable transport (TCP, TLS, WS): no
	// retransmissions, and the waiting timers D, I, J, K are zero.
	Reliable() bool
}

// WireSender is a Sender that can also send an encoded message. A server
// transaction whose Sender implements it keeps only the bytes of its final
// response while it waits in Completed (Timers G/H, J), not the request
// and response objects: that wait is 32 s, and under load most live
// transactions are in it.
type WireSender interface {
	Sender
	SendWire(b []byte) error
}

// Config holds the timer values of a Layer. Zero fields take the defaults
// of RFC 3261 §17.1.1.1 and Table 4.
type Config struct {
	T1 time.Duration // round-trip estimate, default 500ms
	T2 time.Duration // maximum non-INVITE retransmit interval, default 4s
	T4 time.Duration // maximum time a message stays in the network, default 5s
	// TryingDelay is how long an INVITE server transaction waits for the
	// TU's first response before sending 100 Trying itself (§17.2.1:
	// "200 ms"). Default 200ms.
	TryingDelay time.Duration
	// MaxServer bounds the server transactions alive at once; a new
	// request beyond it gets the disposition Overloaded (the caller answers
	// 503 statelessly). Zero means no bound.
	MaxServer int
	// TimerD is how long an INVITE client transaction waits in Completed
	// for retransmitted final responses over unreliable transports
	// (§17.1.1.2: "at least 32 seconds"). Default 32s; test tools shorten it.
	TimerD time.Duration
	// TimerSlack is how late a timer may fire, so that the timers due
	// within it fire in one wake-up: a server ending 10 000 transactions
	// a second would otherwise wake (and start a goroutine) for nearly
	// each. SIP's timers are hundreds of milliseconds and more, so a few
	// milliseconds late changes nothing on the wire. Default 5ms with
	// the real clock; with another Clock (a test's, advanced to exact due
	// times) none unless set. Negative means none.
	TimerSlack time.Duration
	Clock      Clock
	Logger     *slog.Logger
}

// DefaultTimerSlack is Config.TimerSlack's default with the real clock.
const DefaultTimerSlack = 5 * time.Millisecond

func (c Config) withDefaults() Config {
	if c.T1 <= 0 {
		c.T1 = 500 * time.Millisecond
	}
	if c.T2 <= 0 {
		c.T2 = 4 * time.Second
	}
	if c.T4 <= 0 {
		c.T4 = 5 * time.Second
	}
	if c.TryingDelay <= 0 {
		c.TryingDelay = 200 * time.Millisecond
	}
	if c.TimerD <= 0 {
		c.TimerD = 32 * time.Second
	}
	if c.Clock == nil {
		c.Clock = RealClock{}
		if c.TimerSlack == 0 {
			c.TimerSlack = DefaultTimerSlack
		}
	}
	c.TimerSlack = max(c.TimerSlack, 0)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Errors reported to the transaction user (RFC 3261 §8.1.3.1, §17).
var (
	// ErrTimeout is a client transaction that got no final response (Timer
	// B or F, or 64*T1 after the CANCEL of an INVITE, §9.1), or a server
	// transaction whose final response was never acknowledged (Timer H).
	ErrTimeout = errors.New("transaction: timeout")
	// ErrTransport is a send failure of the transport.
	ErrTransport = errors.New("transaction: transport error")
	// ErrTerminated is a response or cancel on a finished transaction.
	ErrTerminated = errors.New("transaction: terminated")
)

// Layer holds the transactions of one SIP element and matches incoming
// messages to them. It is safe for concurrent use.
type Layer struct {
	cfg Config

	timers timerQueue

	mu     sync.Mutex
	server map[string]*ServerTx
	client clientTable

	serverCreated, clientCreated, timeouts, transportErrors, retransmissions atomic.Uint64
}

// Stats counts transactions; see Layer.Stats.
type Stats struct {
	ServerActive, ClientActive int
	// Totals since start.
	ServerCreated, ClientCreated, Timeouts, TransportErrors, Retransmissions uint64
}

// New returns a Layer with the given configuration.
func New(cfg Config) *Layer {
	l := &Layer{
		cfg:    cfg.withDefaults(),
		server: map[string]*ServerTx{},
		client: newClientTable(),
	}
	l.timers.init(l.cfg.Clock, l.cfg.TimerSlack)
	return l
}

// Config returns the layer's effective configuration.
func (l *Layer) Config() Config { return l.cfg }

// Stats returns a snapshot of the counters.
func (l *Layer) Stats() Stats {
	l.mu.Lock()
	s := Stats{ServerActive: len(l.server), ClientActive: l.client.n}
	l.mu.Unlock()
	s.ServerCreated, s.ClientCreated = l.serverCreated.Load(), l.clientCreated.Load()
	s.Timeouts, s.TransportErrors = l.timeouts.Load(), l.transportErrors.Load()
	s.Retransmissions = l.retransmissions.Load()
	return s
}

// Len returns the number of server and client transactions in the table.
func (l *Layer) Len() (server, client int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.server), l.client.n
}

// isRFC3261Branch reports a branch made by an RFC 3261 element: the magic
// cookie followed by something unique (a bare cookie is not, RFC 4475 §3.2.1).
func isRFC3261Branch(b string) bool {
	return len(b) > len(sip.MagicCookie) && strings.HasPrefix(b, sip.MagicCookie)
}

// keyRoom is the stack room for building a server transaction key; a
// longer one goes to the heap.
const keyRoom = 128

// appendServerKey appends the key of the server transaction req belongs
// to (RFC 3261 §17.2.3): branch, sent-by and the method to match (INVITE
// for an ACK or for the INVITE a CANCEL targets). It is built in the
// caller's buffer, so that a lookup allocates nothing, and copied into
// the transaction's own string only for a new one: a transaction waiting
// 32 s in Completed keeps no substring of the datagram it came in.
func appendServerKey(b []byte, req *sip.Request, method string) []byte {
	if len(req.Via) == 0 {
		return b
	}
	top := &req.Via[0]
	if br := top.Branch(); isRFC3261Branch(br) {
		b = append(b, br...)
		b = append(b, '|')
		b = appendLower(b, top.Host)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(top.Port), 10)
		b = append(b, '|')
		return append(b, method...)
	}
	// RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq number and
	// the top Via identify the transaction (the To tag of an ACK is ours
	// and absent from the INVITE, so it is left out).
	b = append(b, "2543|"...)
	b = req.URI.AppendTo(b)
	b = append(b, '|')
	b = append(b, req.From.Tag()...)
	b = append(b, '|')
	b = append(b, req.CallID...)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(req.CSeq.Seq), 10)
	b = append(b, '|')
	b = top.AppendTo(b)
	b = append(b, '|')
	return append(b, method...)
}

// appendLower appends s in lower case, as strings.ToLower would.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(b, strings.ToLower(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// clientKey identifies a client transaction: the branch of the top Via we
// sent and the CSeq method (§17.1.3). The strings of a stored key are the
// request's, which the transaction keeps anyway.
type clientKey struct {
	branch, method string
}

func newClientKey(branch, method string) clientKey {
	if method == sip.ACK {
		method = sip.INVITE
	}
	return clientKey{branch, method}
}

// Disposition says what HandleRequest did with a request.
type Disposition int

const (
	// NewRequest is a new request: the returned server transaction must be
	// answered by the transaction user.
	NewRequest Disposition = iota
	// Absorbed is a retransmission, or an ACK to a non-2xx response, or a
	// CANCEL the layer answered itself: nothing for the TU.
	Absorbed
	// PassACK is an ACK the TU must see: the ACK to a 2xx, which belongs
	// to no transaction (RFC 3261 §17.1.1.3, RFC 6026 §7.1).
	PassACK
	// Overloaded is a new request refused because MaxServer transactions
	// are alive; no transaction was created.
	Overloaded
)

// HandleRequest matches an incoming request against the server
// transactions. A new request creates a transaction, returned with NewRequest. A
// CANCEL matching an INVITE transaction gets 200 and cancels it (§9.2); a
// CANCEL matching nothing gets 481.
func (l *Layer) HandleRequest(req *sip.Request, s Sender) (*ServerTx, Disposition) {
	var buf [keyRoom]byte
	switch req.Method {
	case sip.ACK:
		if tx, _ := l.lookupServer(appendServerKey(buf[:0], req, sip.INVITE)); tx != nil && tx.ack(req) {
			return nil, Absorbed
		}
		return nil, PassACK
	case sip.CANCEL:
		key := appendServerKey(buf[:0], req, sip.CANCEL)
		tx, full := l.lookupServer(key)
		if tx != nil {
			tx.receive(req)
			return nil, Absorbed
		}
		if full {
			return nil, Overloaded
		}
		var ibuf [keyRoom]byte
		invite, _ := l.lookupServer(appendServerKey(ibuf[:0], req, sip.INVITE))
		ctx, created := l.newServer(req, s, key)
		if ctx == nil {
			return nil, Overloaded
		}
		if !created {
			ctx.receive(req)
			return nil, Absorbed
		}
		if invite == nil {
			_ = ctx.Respond(l.reply(req, 481, ""))
			return nil, Absorbed
		}
		_ = ctx.Respond(l.reply(req, 200, ""))
		invite.cancel()
		return nil, Absorbed
	}
	key := appendServerKey(buf[:0], req, req.Method)
	tx, full := l.lookupServer(key)
	if tx != nil {
		tx.receive(req)
		return nil, Absorbed
	}
	if full {
		return nil, Overloaded
	}
	tx, created := l.newServer(req, s, key)
	if tx == nil {
		return nil, Overloaded
	}
	if !created {
		tx.receive(req)
		return nil, Absorbed
	}
	return tx, NewRequest
}

// lookupServer returns the server transaction under key, and whether the
// table is full (MaxServer).
func (l *Layer) lookupServer(key []byte) (tx *ServerTx, full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.server[string(key)], l.cfg.MaxServer > 0 && len(l.server) >= l.cfg.MaxServer
}

// reply builds a response the layer sends on its own behalf. toTag is the
// tag already given to the request's responses, or "" for a new one.
func (l *Layer) reply(req *sip.Request, code int, toTag string) *sip.Response {
	res := sip.NewResponse(req, code, "")
	if code > 100 && res.To.Tag() == "" && !res.To.IsZero() {
		if toTag == "" {
			toTag = sip.NewTag()
		}
		res.To.Params = res.To.Params.Set("tag", toTag)
	}
	return res
}

// HandleResponse passes a response to the client transaction it belongs
// to. It returns false for a response that matches none (stray: a proxy
// forwards a stray 2xx to INVITE statelessly, others drop it, §18.1.2).
func (l *Layer) HandleResponse(res *sip.Response) bool {
	tx := l.Match(res)
	if tx == nil {
		return false
	}
	tx.receive(res)
	return true
}

// Match finds the client transaction a response belongs to (RFC 3261
// §17.1.3), or nil. Together with ClientTx.Receive it is HandleResponse
// in two steps, for a server that decides between them where to run the
// transaction's handler (ClientTx.Inline).
func (l *Layer) Match(res *sip.Response) *ClientTx {
	if len(res.Via) == 0 {
		return nil
	}
	k := newClientKey(res.Via[0].Branch(), res.CSeq.Method)
	h := l.client.hash(k)
	l.mu.Lock()
	tx := l.client.get(k, h)
	l.mu.Unlock()
	return tx
}
