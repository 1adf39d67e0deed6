// Package webrtc terminates a WebRTC party's secure media transport on
// a relay leg (media/plane), so that the relay can bridge a browser to a
// phone that speaks plain RTP: ICE-lite (RFC 8445 §2.5) and DTLS-SRTP
// (RFC 5763, RFC 5764) with RTP and RTCP muxed (RFC 5761), as WebRTC
// requires (RFC 8829, RFC 8827).
//
// The relay is an ICE-lite agent with one host candidate, its leg's
// address: it sends no checks of its own and only answers the browser's,
// so the ICE side is a STUN responder written here on pion/stun rather
// than a full agent from pion/ice. An answered check makes its source one
// the leg takes media from (ICE in place of latching); the nominated one
// is where media goes. DTLS runs pion/dtls over the leg's socket, the
// certificate checked against the fingerprint from SDP; the keys it
// exports feed two pion/srtp contexts, which the plane's readers use to
// decrypt and encrypt packets in place.
//
// What the SDP toward the browser says of the relay, for the SDP
// rewriting to write: a=ice-lite; a=ice-ufrag, a=ice-pwd and a=fingerprint from
// Local; a=setup from LocalSetup; a=rtcp-mux; and one host candidate,
// the leg's address ("a=candidate:1 1 udp 2130706431 <ip> <port> typ
// host").
//
// One Endpoint serves one leg. Its goroutines are few and fixed: one of
// its own per DTLS session, and pion/dtls's for the connection; all of
// them end with Close, or with the leg.
package webrtc

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hlas-voip/hlas/media/plane"
)

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultSTUNRate         = 50
)

// dtlsQueue is how many DTLS records wait for the DTLS connection: a
// handshake flight is a handful of records, retransmitted a few times.
const dtlsQueue = 32

// Params are one side's ICE credentials and DTLS certificate
// fingerprint, as SDP carries them (a=ice-ufrag, a=ice-pwd,
// a=fingerprint).
type Params struct {
	Ufrag, Pwd string
	// Fingerprint as written after a=fingerprint:, e.g. "sha-256 AB:CD:...".
	Fingerprint string
}

// Config configures an Endpoint; zero fields take their defaults.
type Config struct {
	// Identity is the relay's certificate; required.
	Identity *Identity
	// HandshakeTimeout bounds the DTLS handshake from its first record.
	// Default 10s.
	HandshakeTimeout time.Duration
	// STUNRate is how many STUN messages a second the leg answers, with
	// bursts of twice as many: a browser checks a few candidate pairs
	// every 50 ms at most, then once per 5 s for consent (RFC 7675).
	// Default 50.
	STUNRate int
	// Logger gets the endpoint's records; nil discards them.
	Logger *slog.Logger
}

// Errors of the Endpoint's methods.
var (
	// ErrClosed is returned once the endpoint was closed or its leg
	// closed.
	ErrClosed = errors.New("webrtc: endpoint closed")
	// errSetup is an a=setup value that is none of active, passive,
	// actpass.
	errSetup = errors.New("webrtc: a=setup")
)

// Endpoint is the secure transport of one leg. Its methods are safe for
// concurrent use.
type Endpoint struct {
	leg *plane.Leg
	id  *Identity
	cfg Config
	log *slog.Logger

	// ice are the current credentials; iceOK is set by a check that
	// passed since the last ICE (re)start.
	ice   atomic.Pointer[iceCreds]
	iceOK atomic.Bool
	// dtlsIn is the bounded queue from the plane's reader to the DTLS
	// connection of the current session.
	dtlsIn chan []byte
	// sess is the current DTLS session; nil before SetRemote.
	sess atomic.Pointer[session]
	// stun is the responder's scratch, the reader's alone; now is its
	// clock (tests set their own).
	stun stunState
	now  func() time.Time

	detached     chan struct{} // closed when the leg stops using the endpoint
	detachedOnce sync.Once

	// mu serialises SetRemote and Close; it is never taken on the
	// packet path.
	mu        sync.Mutex
	closed    bool
	hasRemote bool
	remote    Params
	remoteFP  fingerprint
	client    bool // our DTLS role

	wg sync.WaitGroup // the sessions' goroutines
}

// Attach makes leg l terminate ICE-lite and DTLS-SRTP through a new
// Endpoint, with random local ICE credentials. The DTLS handshake waits
// for SetRemote.
func Attach(l *plane.Leg, cfg Config) (*Endpoint, error) {
	if l == nil {
		return nil, errors.New("webrtc: attach: no leg")
	}
	if cfg.Identity == nil {
		return nil, errors.New("webrtc: attach: no identity")
	}
	switch {
	case cfg.HandshakeTimeout < 0:
		return nil, fmt.Errorf("webrtc: attach: handshake timeout %v is negative", cfg.HandshakeTimeout)
	case cfg.HandshakeTimeout == 0:
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	switch {
	case cfg.STUNRate < 0:
		return nil, fmt.Errorf("webrtc: attach: STUN rate %d is negative", cfg.STUNRate)
	case cfg.STUNRate == 0:
		cfg.STUNRate = DefaultSTUNRate
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Endpoint{
		leg: l, id: cfg.Identity, cfg: cfg,
		log:      cfg.Logger.With("feature", "webrtc", "leg", l.Addr()),
		dtlsIn:   make(chan []byte, dtlsQueue),
		detached: make(chan struct{}),
		now:      time.Now,
	}
	e.stun.rate, e.stun.burst = float64(cfg.STUNRate), 2*float64(cfg.STUNRate)
	e.ice.Store(newICECreds())
	l.SetSecure((*secure)(e))
	select {
	case <-e.detached:
		return nil, fmt.Errorf("webrtc: attach %v: %w", l.Addr(), ErrClosed)
	default:
	}
	return e, nil
}

// Local returns the relay's side for SDP: its ICE credentials and
// certificate fingerprint. The credentials change with an ICE restart
// (see SetRemote).
func (e *Endpoint) Local() Params {
	c := e.ice.Load()
	return Params{Ufrag: c.localUfrag, Pwd: c.localPwd, Fingerprint: e.id.Fingerprint()}
}

// SetRemote gives the browser's credentials and fingerprint and its
// a=setup (RFC 5763 §5): "active" or "actpass" makes the relay the DTLS
// server (it writes a=setup:passive), "passive" its client. Calling it
// again with the same values changes nothing (a re-INVITE). New
// credentials are an ICE restart (RFC 8445 §9): the local ones change
// too, so Local must be read again for the answer, and media waits for
// new checks. A new fingerprint or role restarts DTLS: no media flows
// until the new handshake completes.
func (e *Endpoint) SetRemote(p Params, remoteSetup string) error {
	fp, err := parseFingerprint(p.Fingerprint)
	if err != nil {
		return err
	}
	var client bool
	switch remoteSetup {
	case "active", "actpass":
	case "passive":
		client = true
	default:
		return fmt.Errorf("%w %q: want active, passive or actpass", errSetup, remoteSetup)
	}
	if p.Ufrag == "" || p.Pwd == "" {
		return errors.New("webrtc: remote ICE credentials missing")
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.isDetached() {
		return ErrClosed
	}
	if remoteSetup == "actpass" && e.hasRemote {
		// A re-offer leaves the roles as they are (RFC 8842 §5.5):
		// flipping them would restart DTLS for nothing.
		client = e.client
	}
	iceRestart := e.hasRemote && (p.Ufrag != e.remote.Ufrag || p.Pwd != e.remote.Pwd)
	// A session that failed (a timeout, a wrong certificate) is tried
	// again by the next offer or answer, even with the same values.
	failed := false
	if s := e.sess.Load(); s != nil && s.failure() != nil {
		failed = true
	}
	dtlsRestart := !e.hasRemote || !fp.equal(e.remoteFP) || client != e.client || failed
	switch {
	case iceRestart:
		e.ice.Store(newICECreds().withRemote(p.Ufrag, p.Pwd))
		e.iceOK.Store(false)
		e.leg.RestartICE()
		e.log.Info("ICE restart", "remote_ufrag", p.Ufrag)
	case !e.hasRemote:
		e.ice.Store(e.ice.Load().withRemote(p.Ufrag, p.Pwd))
	}
	e.hasRemote, e.remote, e.remoteFP, e.client = true, p, fp, client
	if dtlsRestart {
		e.startSession()
	}
	return nil
}

// LocalSetup is the relay's a=setup (RFC 5763 §5): "actpass" in an
// offer before SetRemote, then "passive" as DTLS server or "active" as
// client.
func (e *Endpoint) LocalSetup() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case !e.hasRemote:
		return "actpass"
	case e.client:
		return "active"
	}
	return "passive"
}

// Ready reports whether the SRTP keys are derived: media flows both
// ways.
func (e *Endpoint) Ready() bool {
	s := e.sess.Load()
	return s != nil && s.keys.Load() != nil
}

// Err is why the current DTLS session failed (a wrong certificate, a
// timeout); nil while it runs or once it succeeded.
func (e *Endpoint) Err() error {
	if s := e.sess.Load(); s != nil {
		return s.failure()
	}
	return nil
}

// Close detaches the endpoint from its leg, which is a plain leg again,
// and waits for every goroutine it started to end.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	if !e.isDetached() {
		// Still the leg's Secure (being replaced detaches it): removing
		// it calls Detached.
		e.leg.SetSecure(nil)
	}
	e.detach()
	e.wg.Wait()
	return nil
}

// startSession replaces the DTLS session; the caller holds e.mu.
func (e *Endpoint) startSession() {
	s := newSession(e, e.client, e.remoteFP)
	if old := e.sess.Swap(s); old != nil {
		old.stop()
	}
	e.wg.Add(1)
	go s.run()
}

// isDetached reports whether the leg let go of the endpoint.
func (e *Endpoint) isDetached() bool {
	select {
	case <-e.detached:
		return true
	default:
		return false
	}
}

// detach stops the endpoint's work for good: the leg let go of it.
func (e *Endpoint) detach() {
	e.detachedOnce.Do(func() {
		close(e.detached)
		if s := e.sess.Load(); s != nil {
			s.stop()
		}
	})
}

// checked notes a check that passed: a DTLS client waiting for ICE may
// start.
func (e *Endpoint) checked() {
	if !e.iceOK.Swap(true) {
		if s := e.sess.Load(); s != nil {
			s.wake()
		}
	}
}

// secure is the Endpoint as the plane sees it (plane.Secure), kept off
// Endpoint's own method set.
type secure Endpoint

var _ plane.Secure = (*secure)(nil)

// STUN answers ICE checks; see handleSTUN.
func (s *secure) STUN(msg []byte, src netip.AddrPort, validated bool, resp []byte) (int, plane.STUNResult) {
	return (*Endpoint)(s).handleSTUN(msg, src, validated, resp)
}

// DTLS queues a copy of a record for the DTLS connection.
func (s *secure) DTLS(rec []byte, src netip.AddrPort) bool {
	select {
	case s.dtlsIn <- append([]byte(nil), rec...):
	default:
		return false
	}
	if sess := s.sess.Load(); sess != nil {
		sess.wake()
	}
	return true
}

// Unprotect decrypts SRTP or SRTCP from the browser in place.
func (s *secure) Unprotect(pkt []byte, rtcp bool) (int, error) {
	sess := s.sess.Load()
	if sess == nil {
		return 0, plane.ErrNotReady
	}
	k := sess.keys.Load()
	if k == nil {
		return 0, plane.ErrNotReady
	}
	return k.unprotect(pkt, rtcp)
}

// Protect encrypts RTP or RTCP for the browser in place.
func (s *secure) Protect(pkt []byte, rtcp bool) (int, error) {
	sess := s.sess.Load()
	if sess == nil {
		return 0, plane.ErrNotReady
	}
	k := sess.keys.Load()
	if k == nil {
		return 0, plane.ErrNotReady
	}
	return k.protect(pkt, rtcp)
}

// Detached stops the endpoint's goroutines when the leg lets it go.
func (s *secure) Detached() { (*Endpoint)(s).detach() }
