// Package stund is a STUN server for the Binding method (RFC 8489): it
// tells a client the address and port its requests come from, which a SIP
// phone behind NAT needs for its Contact and its media (RFC 5626 §4.4.2
// keep-alives, ICE server-reflexive candidates).
//
// Server.Answer is the whole protocol: bytes in, bytes out, no socket, so
// the SIP transport can call it for the STUN datagrams it demultiplexes
// from its SIP UDP ports (RFC 7983 §7), and Server.Listen serves it on
// dedicated UDP sockets (port 3478, RFC 8489 §9).
//
// # Behaviour
//
// A Binding request is answered with a Binding success response carrying
// XOR-MAPPED-ADDRESS (the request's source), SOFTWARE and, when the
// request carried one, FINGERPRINT (RFC 8489 §14.7). A request with
// comprehension-required attributes the server does not know gets 420
// with UNKNOWN-ATTRIBUTES (§6.3.1.1). Binding indications (keep-alives)
// are absorbed silently. The server does no authentication: USERNAME,
// MESSAGE-INTEGRITY and the other attributes of RFC 8489 are understood
// and ignored. Everything else is dropped and counted: datagrams that are
// not RFC 5389/8489 STUN (no magic cookie, a length that is not the
// datagram's, a FINGERPRINT that does not match), classic RFC 3489
// requests, responses, and requests of other methods (TURN's Allocate,
// say).
//
// Each source (an IPv4 address, an IPv6 /64) may send Config.Rate
// datagrams per second with bursts of Config.Burst; the excess is dropped
// silently, so the server cannot be used to reflect a flood at a victim.
//
// # Metrics
//
// Server is a prometheus.Collector:
//
//	hlas_stun_requests_total{result}   datagrams by outcome: answered,
//	                                   unknown_attribute (420 sent),
//	                                   indication, rate_limited,
//	                                   malformed, unsupported
package stund

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultRate       = 20
	DefaultMaxSources = 65536
	DefaultSoftware   = "hlas"
)

// Config configures a Server. Zero fields take the defaults named in their
// comments.
type Config struct {
	// Rate is how many datagrams per second one source may send (an IPv4
	// address, or an IPv6 /64, which one host commonly owns whole); the
	// excess is dropped and counted as rate_limited. Default 20.
	Rate float64
	// Burst is how many datagrams a source may send at once after a
	// quiet spell. Default twice Rate, at least 1.
	Burst int
	// MaxSources bounds the sources the rate limiter remembers (about 50
	// bytes each). When it is full and none has been quiet long enough
	// to forget, new sources share one bucket of Rate and Burst until the
	// next sweep. Default 65536.
	MaxSources int
	// Software is the SOFTWARE attribute of every answer (RFC 8489
	// §14.14). Default "hlas".
	Software string
	// Logger receives the server's logs with feature=stun. Nil discards
	// them.
	Logger *slog.Logger
}

// Validate reports the first field with a value New cannot use.
func (c Config) Validate() error {
	switch {
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("stund: Rate %v: want a positive number", c.Rate)
	case c.Burst < 0:
		return fmt.Errorf("stund: Burst %d is negative", c.Burst)
	case c.MaxSources < 0:
		return fmt.Errorf("stund: MaxSources %d is negative", c.MaxSources)
	case len(c.Software) > 763: // RFC 8489 §14.14: fewer than 128 characters, at most 763 bytes
		return fmt.Errorf("stund: Software is %d bytes long, want at most 763", len(c.Software))
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = max(int(math.Ceil(2*c.Rate)), 1)
	}
	if c.MaxSources <= 0 {
		c.MaxSources = DefaultMaxSources
	}
	if c.Software == "" {
		c.Software = DefaultSoftware
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Result is what became of one datagram handed to Answer.
type Result int

// The results, as counted in Stats and the result label of
// hlas_stun_requests_total.
const (
	Answered         Result = iota // Binding success response sent
	UnknownAttribute               // 420 error response sent
	Indication                     // Binding indication absorbed
	RateLimited                    // dropped: its source exceeded the rate
	Malformed                      // dropped: not an RFC 8489 STUN message
	Unsupported                    // dropped: a STUN message but not a Binding request or indication
	numResults
)

var resultNames = [numResults]string{"answered", "unknown_attribute", "indication", "rate_limited", "malformed", "unsupported"}

// String returns the metric label of r.
func (r Result) String() string {
	if r < 0 || r >= numResults {
		return fmt.Sprintf("Result(%d)", int(r))
	}
	return resultNames[r]
}

// Stats counts the datagrams handed to Answer since New, by result.
type Stats [numResults]uint64

// Server answers STUN Binding requests. Its methods are safe for
// concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	software stun.Software
	limit    *limiter
	counts   [numResults]atomic.Uint64
	desc     *prometheus.Desc
	msgs     sync.Pool // *exchange

	// now reads the monotonic clock for the rate limiter; tests replace it
	// before the first Answer.
	now func() time.Duration

	mu     sync.Mutex
	closed bool
	socks  []*net.UDPConn
	addrs  []netip.AddrPort
	wg     sync.WaitGroup // socket readers
}

// exchange is the scratch space of one Answer: the decoded request and
// the response being built, reused through the pool so that an answer
// allocates nothing once warm.
type exchange struct {
	req, res stun.Message
	ip       [16]byte
	unknown  stun.UnknownAttributes
}

// New returns a Server. Zero Config fields take their defaults; call
// Config.Validate first to reject bad values (New clamps them to the
// defaults).
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	epoch := time.Now()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("feature", "stun"),
		software: stun.NewSoftware(cfg.Software),
		limit:    newLimiter(cfg.Rate, cfg.Burst, cfg.MaxSources),
		desc: prometheus.NewDesc("hlas_stun_requests_total",
			"STUN datagrams received, by outcome: answered, unknown_attribute (420 sent), indication, rate_limited, malformed, unsupported.",
			[]string{"result"}, nil),
		now: func() time.Duration { return time.Since(epoch) },
	}
	s.msgs.New = func() any {
		return &exchange{
			req: stun.Message{Raw: make([]byte, 0, 256)},
			res: stun.Message{Raw: make([]byte, 0, 128)},
		}
	}
	return s
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	var st Stats
	for i := range s.counts {
		st[i] = s.counts[i].Load()
	}
	return st
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	for i := range s.counts {
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.CounterValue, float64(s.counts[i].Load()), Result(i).String())
	}
}

var _ prometheus.Collector = (*Server)(nil)

// headerSize is the STUN message header; magicCookie is its bytes 4-7 in
// every RFC 5389/8489 message (RFC 8489 §5).
const (
	headerSize  = 20
	magicCookie = 0x2112A442
)

// IsMessage reports whether b is framed as one RFC 8489 STUN message: the
// two leading zero bits, the magic cookie, and a length that is a multiple
// of 4 and accounts for the rest of the datagram exactly (RFC 8489 §5).
// It is what a UDP port shared with another protocol checks before handing
// a datagram over (RFC 7983 §7 adds that the first byte is 0 to 3).
func IsMessage(b []byte) bool {
	if len(b) < headerSize || b[0]&0xC0 != 0 || binary.BigEndian.Uint32(b[4:8]) != magicCookie {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	return n%4 == 0 && headerSize+n == len(b)
}

// knownRequired are the comprehension-required attributes (type below
// 0x8000) this server understands in a Binding request: those of RFC
// 8489 §18.3. Authentication attributes are understood in the sense that
// the server knows it may ignore them: it answers without credentials.
// Anything else in that range, such as RFC 5780's CHANGE-REQUEST, gets
// 420 (§6.3.1.1), which tells an RFC 5780 client that this server does
// not do NAT behaviour discovery.
func knownRequired(t stun.AttrType) bool {
	switch t {
	case stun.AttrMappedAddress, stun.AttrUsername, stun.AttrMessageIntegrity,
		stun.AttrErrorCode, stun.AttrUnknownAttributes, stun.AttrRealm, stun.AttrNonce,
		stun.AttrMessageIntegritySHA256, stun.AttrPasswordAlgorithm, stun.AttrUserhash,
		stun.AttrXORMappedAddress:
		return true
	}
	return false
}

// maxUnknown bounds the attribute types listed in a 420's
// UNKNOWN-ATTRIBUTES, so that a request stuffed with unknown attributes
// does not get a larger answer than it was.
const maxUnknown = 8

// reasonUnknownAttribute is the reason phrase of a 420 (RFC 8489 §14.8).
var reasonUnknownAttribute = []byte("Unknown Attribute")

// Answer handles one datagram that arrived from remote on local, and
// appends the answer to send back to remote to dst. When there is nothing
// to send (a dropped or absorbed datagram) it returns dst unchanged.
// It never panics on any input.
func (s *Server) Answer(dst, req []byte, local, remote netip.AddrPort) []byte {
	_ = local // every local address answers alike: the mapped address is the remote's
	r, out := s.answer(dst, req, remote)
	s.counts[r].Add(1)
	return out
}

func (s *Server) answer(dst, req []byte, remote netip.AddrPort) (Result, []byte) {
	if !IsMessage(req) {
		return Malformed, dst
	}
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	if !remote.Addr().IsValid() {
		return Malformed, dst
	}
	if !s.limit.allow(sourceKey(remote.Addr()), s.now()) {
		return RateLimited, dst
	}
	x := s.msgs.Get().(*exchange)
	defer s.msgs.Put(x)
	if err := stun.Decode(req, &x.req); err != nil {
		return Malformed, dst
	}
	fp := x.req.Contains(stun.AttrFingerprint)
	if fp && !fingerprintLast(req) || fp && stun.Fingerprint.Check(&x.req) != nil {
		// RFC 8489 §7.3: a FINGERPRINT that does not check out means
		// the datagram is not STUN at all.
		return Malformed, dst
	}
	if x.req.Type.Method != stun.MethodBinding {
		return Unsupported, dst
	}
	switch x.req.Type.Class {
	case stun.ClassIndication:
		return Indication, dst
	case stun.ClassRequest:
	default:
		return Unsupported, dst
	}
	res := &x.res
	res.Reset()
	res.TransactionID = x.req.TransactionID
	x.unknown = x.unknown[:0]
	for _, a := range x.req.Attributes {
		if a.Type.Required() && !knownRequired(a.Type) && len(x.unknown) < maxUnknown {
			x.unknown = append(x.unknown, a.Type)
		}
	}
	result := Answered
	var err error
	if len(x.unknown) > 0 {
		// RFC 8489 §6.3.1.1.
		result = UnknownAttribute
		res.Type = stun.BindingError
		res.WriteHeader()
		err = errors.Join(
			stun.ErrorCodeAttribute{Code: stun.CodeUnknownAttribute, Reason: reasonUnknownAttribute}.AddTo(res),
			x.unknown.AddTo(res),
			s.software.AddTo(res),
		)
	} else {
		// RFC 8489 §6.3.1.2 (Binding: §3 and §14.2).
		res.Type = stun.BindingSuccess
		res.WriteHeader()
		ip := x.ip[:16]
		if a := remote.Addr(); a.Is4() {
			v4 := a.As4()
			ip = x.ip[:copy(x.ip[:], v4[:])]
		} else {
			x.ip = a.As16()
		}
		err = errors.Join(
			stun.XORMappedAddress{IP: ip, Port: int(remote.Port())}.AddTo(res),
			s.software.AddTo(res),
		)
	}
	if err == nil && fp {
		err = stun.Fingerprint.AddTo(res)
	}
	if err != nil {
		// Cannot happen with the attributes above; drop rather than
		// send something half built.
		return Malformed, dst
	}
	return result, append(dst, res.Raw...)
}

// fingerprintLast reports whether the message's last attribute is a
// FINGERPRINT of the right size, which RFC 8489 §14.7 requires and pion's
// check assumes.
func fingerprintLast(b []byte) bool {
	n := len(b)
	return n >= headerSize+8 &&
		binary.BigEndian.Uint16(b[n-8:n-6]) == uint16(stun.AttrFingerprint) &&
		binary.BigEndian.Uint16(b[n-6:n-4]) == 4
}

// sourceKey is the rate limiter's key for a source address: the IPv4
// address, or the /64 an IPv6 address is in (one host commonly owns a
// whole /64 and can send from any address in it).
func sourceKey(ip netip.Addr) netip.Addr {
	if ip.Is4() {
		return ip
	}
	b := ip.As16()
	clear(b[8:])
	return netip.AddrFrom16(b)
}
