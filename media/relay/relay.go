// Package relay is hlas's built-in media relay: a media.Engine that
// rewrites each session description so that both parties send their RTP
// and RTCP to it, and forwards between them on the data plane of
// media/plane. A call is its Call-ID; each m-line of it is a stream with
// two legs, one facing the caller and one facing the callee, each a pair
// of UDP ports on the address that party reaches the server on.
//
// A stream between a WebRTC client and a plain RTP phone is bridged: the
// leg facing the browser terminates ICE (as an ICE-lite agent) and
// DTLS-SRTP with a media/webrtc Endpoint, the other leg speaks plain RTP,
// and each party gets the description of its own kind (sdpedit.Convert).
// The payload formats pass as they are: the relay never transcodes, and
// when the two sides share no codec the call fails with media.ErrNoCodec.
// Between two WebRTC clients the relay keeps out: their streams are not
// relayed and their descriptions pass unchanged, since each browser's
// DTLS reaches the other end to end.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/media/plane"
	"github.com/hlas-voip/hlas/media/sdpedit"
	"github.com/hlas-voip/hlas/media/webrtc"
)

// Config configures the relay; the zero value of each field is its
// documented default.
type Config struct {
	// Plane is the data plane: port range, readers, latching window.
	Plane plane.Config
	// Interfaces map the server's addresses to the addresses written in
	// SDP: a relay behind a 1:1 NAT binds its private address and
	// advertises the public one. An address not listed is bound and
	// advertised as it is.
	Interfaces []Interface
	// Timeout ends an answered call when one of its parties sent nothing
	// (RTP or RTCP) for that long: OnTimeout is called. Default 60s;
	// negative: never.
	Timeout time.Duration
	// HoldTimeout replaces Timeout while a stream is on hold (sendonly,
	// recvonly, inactive or a null address), when phones may legitimately
	// send nothing. Default 1h.
	HoldTimeout time.Duration
	// OnTimeout hears of the calls the relay ended for inactivity. It is
	// called on the relay's own goroutine, which it must not hold long.
	OnTimeout func(media.Timeout)
	// Logger receives the logs, with feature=media. Nil discards them.
	Logger *slog.Logger
	// Registerer gets the relay's metrics (hlas_media_*). Nil skips them.
	Registerer prometheus.Registerer
	// Now is the clock; nil is time.Now. Tests drive the timeout with it.
	Now func() time.Time
}

// Interface is one address of the server as the relay uses it.
type Interface struct {
	// Bind is the local address the relay's sockets are bound to.
	Bind netip.Addr `yaml:"bind"`
	// Advertise is the address written into SDP for Bind; zero: Bind.
	Advertise netip.Addr `yaml:"advertise"`
}

// Relay is the built-in media.Engine. Safe for concurrent use.
type Relay struct {
	cfg    Config
	pl     *plane.Plane
	id     *webrtc.Identity // the DTLS certificate of every bridged stream
	log    *slog.Logger
	now    func() time.Time
	calls  prometheus.Gauge
	ended  *prometheus.CounterVec
	lost   prometheus.Counter
	jitter prometheus.Histogram

	mu    sync.Mutex
	byID  map[string]*call
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

var _ media.Engine = (*Relay)(nil)

// call is one relayed call.
type call struct {
	id string
	// tags[0] is the caller's (the first offer's From tag), tags[1] the
	// callee's: the latest other tag seen (a fork's answer names it).
	tags    [2]string
	streams []*stream
	start   time.Time
	// answered is when the first answer was handled: before it, no
	// media is expected (ringing).
	answered time.Time
	changed  time.Time // last offer or answer
	held     bool      // some stream of the latest description is on hold
	// offer is the latest offer handled: its streams' modes are in
	// streams, and an answer is checked against its codecs.
	offer *sdpedit.Description
}

// mode is how a stream's media passes the relay.
type mode uint8

const (
	// relayed: the relay forwards what each party sends, as it is (two
	// plain phones, or SDES-SRTP, whose keys are in the SDP).
	relayed mode = iota
	// passed: two WebRTC clients; the relay keeps out of the stream.
	passed
	// bridged: one WebRTC client, one plain phone; the leg facing the
	// browser terminates its ICE and DTLS-SRTP.
	bridged
	// refused: a stream of a bridged call the receiver cannot take (a
	// data channel to a phone, T.38 or SDES to a browser), or one its
	// sender disabled: written disabled, not relayed.
	refused
)

// stream is one m-line: legs[0] faces the caller, legs[1] the callee.
type stream struct {
	legs [2]*plane.Leg
	// ads are the addresses advertised for each leg.
	ads  [2]netip.Addr
	mode mode
	// A bridged stream's legs[browser] faces the WebRTC client and ep
	// terminates its ICE and DTLS there; mid is the stream's a=mid
	// towards the browser, role the DTLS role the relay took in the last
	// answer ("active" or "passive"; empty before one).
	browser int
	ep      *webrtc.Endpoint
	mid     string
	role    string
}

// step is what the handling of one description does to one stream,
// decided before anything changes.
type step struct {
	mode    mode
	browser int
	to      sdpedit.Profile // the receiver's profile (bridged and refused)
}

// New starts a relay and its data plane.
func New(cfg Config) (*Relay, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.HoldTimeout == 0 {
		cfg.HoldTimeout = time.Hour
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("feature", "media")
	pc := cfg.Plane
	if pc.Logger == nil {
		pc.Logger = log
	}
	if pc.Registerer == nil {
		pc.Registerer = cfg.Registerer
	}
	id, err := webrtc.NewIdentity()
	if err != nil {
		return nil, err
	}
	pl, err := plane.New(pc)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg: cfg, pl: pl, id: id, log: log, now: cfg.Now,
		byID: map[string]*call{}, stop: make(chan struct{}), done: make(chan struct{}),
		calls: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "hlas", Subsystem: "media", Name: "calls",
			Help: "Calls whose media the built-in relay relays."}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "hlas", Subsystem: "media", Name: "calls_ended_total",
			Help: "Relayed calls ended, by why: deleted by the signalling, timeout (no media), closed."}, []string{"why"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "hlas", Subsystem: "media", Name: "calls_lost_packets_total",
			Help: "Packets the parties of ended relayed calls reported lost in their last RTCP receiver reports, both directions."}),
		jitter: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "hlas", Subsystem: "media", Name: "call_jitter_milliseconds",
			Help:    "The worse direction's last reported interarrival jitter of each ended relayed call with RTCP.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 50, 100, 200}}),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.calls, r.ended, r.lost, r.jitter} {
			if err := cfg.Registerer.Register(c); err != nil {
				pl.Close()
				return nil, err
			}
		}
	}
	go r.sweep()
	return r, nil
}

// Offer handles an offer from r.FromTag: the first of a Call-ID makes the
// call. A WebRTC sender and a receiver that is not (r.ReceiverWebRTC), or
// the other way round, are bridged; an offer of which the receiver could
// take no stream fails with media.ErrNoCodec.
func (r *Relay) Offer(_ context.Context, req *media.Request) ([]byte, error) {
	return r.handle(req, false)
}

// Answer handles the answer from r.FromTag to the last offer. On a
// bridged stream it must accept one of the offered codecs (else
// media.ErrNoCodec) in the profile it was offered (else
// media.ErrBadSDP).
func (r *Relay) Answer(_ context.Context, req *media.Request) ([]byte, error) {
	return r.handle(req, true)
}

func (r *Relay) handle(req *media.Request, answer bool) ([]byte, error) {
	d, err := sdpedit.Parse(req.SDP)
	if err != nil {
		return nil, err
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.byID[req.CallID]
	if c == nil {
		if answer {
			return nil, media.ErrNoSession
		}
		c = &call{id: req.CallID, start: now}
		c.tags[0] = req.FromTag
		r.byID[req.CallID] = c
		r.calls.Inc()
	}
	from := 0
	if req.FromTag != c.tags[0] {
		from = 1
		c.tags[1] = req.FromTag
	} else if req.ToTag != "" {
		c.tags[1] = req.ToTag
	}
	to := 1 - from
	var steps []step
	if answer {
		steps, err = c.answerSteps(d, from)
	} else {
		steps, err = offerSteps(d, req.ReceiverWebRTC, from)
	}
	if err != nil {
		r.dropIfEmptyLocked(c)
		return nil, err
	}
	eps := make([]sdpedit.Endpoint, len(d.Streams))
	bs := make([]sdpedit.Bridge, len(d.Streams))
	// An offer to a browser of one bridged stream puts it in a BUNDLE
	// group of its own (sdpedit.Bridge.Bundle).
	toBrowser := 0
	for i, stp := range steps {
		if stp.mode == bridged && stp.browser == to && d.Streams[i].Port != 0 {
			toBrowser++
		}
	}
	held := false
	for i, st := range d.Streams {
		if i >= len(c.streams) {
			c.streams = append(c.streams, &stream{})
		}
		s := c.streams[i]
		stp := steps[i]
		browserSide := stp.mode == bridged || stp.mode == refused
		if s.mode != stp.mode || browserSide && s.browser != stp.browser {
			// A leg that terminated a browser's DTLS cannot turn plain,
			// nor face the other party: start the stream afresh.
			s.release()
			if !browserSide || s.browser != stp.browser {
				s.mid = ""
			}
			s.mode, s.browser, s.role = stp.mode, stp.browser, ""
		}
		if browserSide && from == s.browser && !answer {
			if mid := d.Transport(i).Mid; mid != "" {
				s.mid = mid
			}
		}
		if stp.mode == passed || stp.mode == refused || st.Port == 0 {
			// Two browsers, a stream the receiver cannot take, or one
			// rejected or disabled (RFC 3264 §8.2): nothing to relay.
			s.release()
			bs[i].To = stp.to
			if stp.to == sdpedit.WebRTC {
				bs[i].Mid = r.midFor(s, i)
			}
			continue
		}
		if st.OnHold() {
			held = true
		}
		// The sender's leg faces it from the address its SIP came to, in
		// the family of its media; the receiver's from the address its
		// SIP leaves on.
		bind := pick(req.Local, st.Addr)
		if stp.mode == bridged && from == s.browser {
			// A browser's c= is only its default candidate: the relay
			// offers it one candidate, in the family of its SIP.
			bind = req.Local
		}
		if err := r.ensureLeg(s, from, bind); err != nil {
			r.dropIfEmptyLocked(c)
			return nil, err
		}
		if err := r.ensureLeg(s, to, req.Advertise); err != nil {
			r.dropIfEmptyLocked(c)
			return nil, err
		}
		rtp := netip.AddrPortFrom(st.Addr, uint16(st.Port))
		if stp.mode == bridged {
			if err := r.bridgeSender(s, d, i, from, answer); err != nil {
				r.dropIfEmptyLocked(c)
				return nil, err
			}
			if from != s.browser {
				// The relay gives the phone no rtcp-mux (sdpedit.Convert),
				// so it sends RTCP apart whatever it offered.
				s.legs[from].SetPeer(rtp, st.RTCP, false)
			}
		} else {
			s.legs[from].SetPeer(rtp, st.RTCP, st.RTCPMux)
		}
		if st.ClockRate > 0 {
			s.legs[from].SetClockRate(st.ClockRate)
			s.legs[to].SetClockRate(st.ClockRate)
		}
		plane.Link(s.legs[0], s.legs[1])
		out := s.legs[to].Addr()
		eps[i] = sdpedit.Endpoint{Addr: s.ads[to], RTP: int(out.Port()), RTCP: int(out.Port()) + 1}
		if stp.mode == bridged {
			bs[i] = r.bridgeReceiver(c, s, i, to, answer)
			bs[i].Bundle = !answer && toBrowser == 1
			if bs[i].To == sdpedit.WebRTC {
				eps[i].RTCP = eps[i].RTP
			}
		}
	}
	body, err := d.Convert(eps, bs)
	if err != nil {
		if !errors.Is(err, media.ErrBadSDP) {
			err = fmt.Errorf("%w: %v", media.ErrBadSDP, err)
		}
		return nil, err
	}
	c.held, c.changed = held, now
	if answer && c.answered.IsZero() {
		c.answered = now
	}
	if !answer {
		c.offer = d
	}
	return body, nil
}

// offerSteps decides each stream's mode from an offer: the sender's kind
// from its SDP, the receiver's from the signalling. A bridged offer with
// streams in use but none the receiver can take is refused with
// ErrNoCodec; a browser's stream must carry usable ICE and DTLS
// parameters.
func offerSteps(d *sdpedit.Description, receiverWebRTC bool, from int) ([]step, error) {
	steps := make([]step, len(d.Streams))
	senderWebRTC := d.WebRTC()
	switch {
	case senderWebRTC && receiverWebRTC:
		for i := range steps {
			steps[i].mode = passed
		}
		return steps, nil
	case !senderWebRTC && !receiverWebRTC:
		return steps, nil // relayed
	}
	to, browser := sdpedit.WebRTC, 1-from
	if senderWebRTC {
		to, browser = sdpedit.Plain, from
	}
	live, usable := false, false
	for i, st := range d.Streams {
		steps[i] = step{mode: refused, browser: browser, to: to}
		if senderWebRTC {
			if err := d.Transport(i).CheckMid(); err != nil {
				return nil, fmt.Errorf("relay: stream %d: %w", i, err)
			}
		}
		if st.Port == 0 {
			continue
		}
		live = true
		if !d.Bridgeable(i, to) {
			continue
		}
		if senderWebRTC {
			if err := d.Transport(i).Check(); err != nil {
				return nil, fmt.Errorf("relay: stream %d: %w", i, err)
			}
		}
		steps[i].mode = bridged
		usable = true
	}
	if live && !usable {
		return nil, media.ErrNoCodec
	}
	return steps, nil
}

// answerSteps keeps each stream in the mode its offer gave it, and checks
// a bridged stream's answer: it must accept a codec of the offer (else
// ErrNoCodec: the relay does not transcode) in the profile it was
// offered, with usable ICE and DTLS parameters from a browser.
func (c *call) answerSteps(d *sdpedit.Description, from int) ([]step, error) {
	steps := make([]step, len(d.Streams))
	special := false
	for i := range c.streams {
		if c.streams[i].mode != relayed {
			special = true
		}
	}
	if special && (c.offer == nil || len(d.Streams) != len(c.offer.Streams)) {
		// RFC 3264 §6: the answer has exactly the offer's m-lines.
		return nil, fmt.Errorf("relay: answer with %d m-lines to a bridged offer of other m-lines: %w", len(d.Streams), media.ErrBadSDP)
	}
	for i, st := range d.Streams {
		if i >= len(c.streams) {
			continue // relayed
		}
		s := c.streams[i]
		steps[i] = step{mode: s.mode, browser: s.browser}
		if s.mode != bridged && s.mode != refused {
			continue
		}
		steps[i].to = sdpedit.Plain
		if s.browser != from {
			steps[i].to = sdpedit.WebRTC
		}
		if s.mode != bridged || st.Port == 0 {
			continue
		}
		if !d.CommonCodec(i, c.offer, i) {
			return nil, fmt.Errorf("relay: stream %d: %w", i, media.ErrNoCodec)
		}
		if s.browser == from {
			if !st.WebRTC {
				return nil, fmt.Errorf("relay: stream %d: a %s answer to a WebRTC offer: %w", i, st.Proto, media.ErrBadSDP)
			}
			if err := d.Transport(i).Check(); err != nil {
				return nil, fmt.Errorf("relay: stream %d: %w", i, err)
			}
		} else if !d.Bridgeable(i, sdpedit.WebRTC) {
			return nil, fmt.Errorf("relay: stream %d: a %s answer to an RTP/AVP offer: %w", i, st.Proto, media.ErrBadSDP)
		}
	}
	return steps, nil
}

// bridgeSender gives a bridged stream its Endpoint on the browser's leg
// (made once, kept across re-INVITEs) and, when the browser is the
// sender, passes it the browser's ICE and DTLS parameters.
func (r *Relay) bridgeSender(s *stream, d *sdpedit.Description, i, from int, answer bool) error {
	if s.ep == nil {
		ep, err := webrtc.Attach(s.legs[s.browser], webrtc.Config{Identity: r.id, Logger: r.log})
		if err != nil {
			return fmt.Errorf("relay: stream %d: %w", i, err)
		}
		s.ep, s.role = ep, ""
	}
	if from != s.browser {
		return nil
	}
	tr := d.Transport(i)
	if err := s.ep.SetRemote(webrtc.Params{Ufrag: tr.Ufrag, Pwd: tr.Pwd, Fingerprint: tr.Fingerprint}, tr.Setup); err != nil {
		return fmt.Errorf("relay: stream %d: %v: %w", i, err, media.ErrBadSDP)
	}
	if answer {
		s.role = ourRole(tr.Setup)
	}
	return nil
}

// bridgeReceiver is the conversion of a bridged stream for its receiver:
// towards the phone plain RTP; towards the browser the Endpoint's ICE
// credentials and the relay's fingerprint, its DTLS role (in an answer
// the one the browser's offer leaves it, RFC 4145 §4; in an offer
// actpass, or the role it has, to keep the association, RFC 8842 §5.5)
// and the stream's mid.
func (r *Relay) bridgeReceiver(c *call, s *stream, i, to int, answer bool) sdpedit.Bridge {
	if to != s.browser {
		return sdpedit.Bridge{To: sdpedit.Plain}
	}
	loc := s.ep.Local()
	b := sdpedit.Bridge{To: sdpedit.WebRTC, Ufrag: loc.Ufrag, Pwd: loc.Pwd, Fingerprint: loc.Fingerprint, Mid: r.midFor(s, i)}
	switch {
	case answer:
		s.role = ourRole(c.offer.Transport(i).Setup)
		b.Setup = s.role
	case s.role != "":
		b.Setup = s.role
	default:
		b.Setup = "actpass"
	}
	return b
}

// midFor is the stream's a=mid towards the browser: the browser's own
// when it offered one, else the m-line's index, which stays the same
// across re-offers (RFC 8843 §7.2).
func (r *Relay) midFor(s *stream, i int) string {
	if s.mid == "" {
		s.mid = strconv.Itoa(i)
	}
	return s.mid
}

// ourRole is the relay's DTLS role given the browser's a=setup, of an
// answer or of an offer (RFC 4145 §4): passive, unless the browser is.
// webrtc.Endpoint.SetRemote takes the same role from the same value.
func ourRole(remote string) string {
	if remote == "passive" {
		return "active"
	}
	return "passive"
}

// pick is the address a leg facing a sender is bound on: the address its
// SIP came to, unless its media is of the other family.
func pick(local, mediaAddr netip.Addr) netip.Addr {
	if !local.IsValid() {
		return netip.Addr{}
	}
	if mediaAddr.IsValid() && !mediaAddr.IsUnspecified() && mediaAddr.Unmap().Is4() != local.Unmap().Is4() {
		// The media is of the other family than the signalling: bind
		// the unspecified address of the media's family.
		if mediaAddr.Unmap().Is4() {
			return netip.IPv4Unspecified()
		}
		return netip.IPv6Unspecified()
	}
	return local
}

// ensureLeg gives s a leg on side i bound where addr says (the relay's
// interface for it), reusing the one it has when it is of the same
// family.
func (r *Relay) ensureLeg(s *stream, i int, addr netip.Addr) error {
	bind, ad, err := r.iface(addr)
	if err != nil {
		return err
	}
	if l := s.legs[i]; l != nil {
		if l.Addr().Addr().Unmap().Is4() == bind.Unmap().Is4() {
			return nil
		}
		if s.ep != nil && s.browser == i {
			// The browser's Endpoint lives and dies with its leg.
			s.ep.Close()
			s.ep, s.role = nil, ""
		}
		l.Close()
		s.legs[i] = nil
	}
	l, err := r.pl.Allocate(bind)
	if err != nil {
		return err
	}
	s.legs[i], s.ads[i] = l, ad
	return nil
}

// iface maps a server address to the relay's bind and advertised
// addresses.
func (r *Relay) iface(addr netip.Addr) (bind, ad netip.Addr, err error) {
	addr = addr.Unmap()
	for _, in := range r.cfg.Interfaces {
		b := in.Bind.Unmap()
		if b == addr || (!addr.IsValid() || addr.IsUnspecified()) && b.Is4() == (!addr.IsValid() || addr.Is4()) {
			ad = in.Advertise
			if !ad.IsValid() {
				ad = in.Bind
			}
			return in.Bind, ad, nil
		}
	}
	if !addr.IsValid() || addr.IsUnspecified() {
		return netip.Addr{}, netip.Addr{}, errors.New("media: no address to advertise (configure media.interfaces)")
	}
	return addr, addr, nil
}

// release closes the stream's Endpoint and legs.
func (s *stream) release() {
	if s.ep != nil {
		s.ep.Close()
		s.ep = nil
	}
	for i, l := range s.legs {
		if l != nil {
			l.Close()
			s.legs[i] = nil
		}
	}
}

// dropIfEmptyLocked forgets a call that never got a leg (its first offer
// failed), so a failed call holds nothing.
func (r *Relay) dropIfEmptyLocked(c *call) {
	if c.relaying() || c.offer != nil {
		return
	}
	delete(r.byID, c.id)
	r.calls.Dec()
}

// Delete stops relaying the call and returns what was relayed.
func (r *Relay) Delete(_ context.Context, callID string) (media.Stats, error) {
	r.mu.Lock()
	c := r.byID[callID]
	if c != nil {
		delete(r.byID, callID)
		r.calls.Dec()
	}
	r.mu.Unlock()
	if c == nil {
		return media.Stats{}, media.ErrNoSession
	}
	r.ended.WithLabelValues("deleted").Inc()
	return r.end(c), nil
}

// end closes the call's legs and sums what they relayed.
func (r *Relay) end(c *call) media.Stats {
	st := c.stats()
	st.Duration = r.now().Sub(c.start)
	for _, s := range c.streams {
		s.release()
	}
	if l := st.Caller.Lost + st.Callee.Lost; l > 0 {
		r.lost.Add(float64(l))
	}
	if j := max(st.Caller.JitterMS, st.Callee.JitterMS); j > 0 {
		r.jitter.Observe(j)
	}
	return st
}

// stats sums the call's legs: legs[0] counts what the caller sent, and
// the latest receiver report of its party, the caller, tells how the
// callee's stream arrived.
func (c *call) stats() media.Stats {
	var st media.Stats
	for _, s := range c.streams {
		if s.legs[0] == nil && s.legs[1] == nil {
			continue
		}
		st.Streams++
		var ls [2]plane.LegStats
		for i, l := range s.legs {
			if l != nil {
				ls[i] = l.Stats()
			}
		}
		add(&st.Caller, ls[0], ls[1])
		add(&st.Callee, ls[1], ls[0])
	}
	return st
}

func add(d *media.Direction, sent, receiver plane.LegStats) {
	d.Packets += sent.Packets
	d.Bytes += sent.Bytes
	d.Dropped += sent.Dropped
	d.Lost += receiver.Lost
	if receiver.JitterMS > d.JitterMS {
		d.JitterMS = receiver.JitterMS
	}
}

// relaying reports whether some stream of the call has a leg.
func (c *call) relaying() bool {
	for _, s := range c.streams {
		if s.legs[0] != nil || s.legs[1] != nil {
			return true
		}
	}
	return false
}

// silence is how long the quieter party of the call has sent nothing
// (RTP or RTCP) at now, counted from the last offer or answer at most:
// a phone that died while the other talks ends the call as well as two
// that both went quiet.
func (c *call) silence(now time.Time) time.Duration {
	var worst time.Duration
	for side := range 2 {
		since := c.changed
		for _, s := range c.streams {
			if l := s.legs[side]; l != nil {
				if x := l.Stats().Last; x.After(since) {
					since = x
				}
			}
		}
		worst = max(worst, now.Sub(since))
	}
	return worst
}

// sweep ends the calls without media for their timeout, once a second.
func (r *Relay) sweep() {
	defer close(r.done)
	if r.cfg.Timeout < 0 {
		<-r.stop
		return
	}
	period := time.Second
	if r.cfg.Timeout < 4*period {
		period = r.cfg.Timeout / 4
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.expire()
		}
	}
}

// expire ends the calls whose media stopped.
func (r *Relay) expire() {
	now := r.now()
	var dead []*call
	r.mu.Lock()
	for id, c := range r.byID {
		if c.answered.IsZero() || !c.relaying() {
			// Ringing: no media is expected yet. Or nothing relayed (two
			// browsers): no media to miss.
			continue
		}
		limit := r.cfg.Timeout
		if c.held {
			limit = r.cfg.HoldTimeout
		}
		if c.silence(now) >= limit {
			delete(r.byID, id)
			r.calls.Dec()
			dead = append(dead, c)
		}
	}
	r.mu.Unlock()
	for _, c := range dead {
		r.ended.WithLabelValues("timeout").Inc()
		st := r.end(c)
		r.log.Info("call without media ended", "call-id", c.id, "timeout", r.cfg.Timeout.String(),
			"caller_packets", st.Caller.Packets, "callee_packets", st.Callee.Packets)
		if r.cfg.OnTimeout != nil {
			r.cfg.OnTimeout(media.Timeout{CallID: c.id, CallerTag: c.tags[0], CalleeTag: c.tags[1], Stats: st})
		}
	}
}

// Expire runs the inactivity check now; tests call it after moving Now.
func (r *Relay) Expire() { r.expire() }

// Kernel reports whether the data plane forwards latched RTP in the
// kernel (plane.Config.Kernel).
func (r *Relay) Kernel() bool { return r.pl.Kernel() }

// Calls is the number of calls relayed now.
func (r *Relay) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

// Close ends every call and stops the data plane.
func (r *Relay) Close() error {
	var err error
	r.close.Do(func() {
		close(r.stop)
		<-r.done
		r.mu.Lock()
		calls := r.byID
		r.byID = map[string]*call{}
		r.mu.Unlock()
		for _, c := range calls {
			r.ended.WithLabelValues("closed").Inc()
			r.calls.Dec()
			r.end(c)
		}
		err = r.pl.Close()
	})
	return err
}
