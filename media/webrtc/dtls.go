package webrtc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/deadline"
)

// srtpProfiles are the SRTP protection profiles offered or accepted, in
// order of preference: AES-GCM (RFC 7714), then the profile every
// WebRTC endpoint has (RFC 8827 §6.5).
var srtpProfiles = []dtls.SRTPProtectionProfile{
	dtls.SRTP_AEAD_AES_128_GCM,
	dtls.SRTP_AES128_CM_HMAC_SHA1_80,
}

// session is one DTLS association and the SRTP keys it yields. A new
// fingerprint or role replaces it; its one goroutine (run) waits until
// it may start, shakes hands, then reads the connection until it ends.
type session struct {
	e      *Endpoint
	client bool
	fp     fingerprint
	ctx    context.Context
	cancel context.CancelFunc
	pc     *packetConn
	wakeC  chan struct{} // something run waits for may have happened
	keys   atomic.Pointer[srtpKeys]

	mu  sync.Mutex
	err error
	// certErr is why the peer's certificate was refused: pion/dtls
	// reports it without wrapping.
	certErr error
}

func newSession(e *Endpoint, client bool, fp fingerprint) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		e: e, client: client, fp: fp, ctx: ctx, cancel: cancel,
		pc:    newPacketConn(e),
		wakeC: make(chan struct{}, 1),
	}
}

// wake tells run to look again whether it may start; it never blocks.
func (s *session) wake() {
	select {
	case s.wakeC <- struct{}{}:
	default:
	}
}

// stop ends the session; run returns soon after. It never blocks.
func (s *session) stop() {
	s.cancel()
	s.pc.Close()
}

func (s *session) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *session) fail(err error) {
	if s.ctx.Err() != nil {
		return // stopped: not the peer's failure
	}
	s.mu.Lock()
	if s.certErr != nil {
		err = fmt.Errorf("webrtc: DTLS handshake: %w", s.certErr)
	} else {
		err = fmt.Errorf("webrtc: DTLS handshake: %w", err)
	}
	s.err = err
	s.mu.Unlock()
	s.e.log.Warn("DTLS handshake failed", "client", s.client, "err", err)
}

// startable reports whether the handshake may begin: as DTLS client once
// ICE validated the browser's address, as server once its first record
// arrived (RFC 8842 §5: DTLS runs over the selected ICE pair).
func (s *session) startable() bool {
	if s.client {
		return s.e.iceOK.Load()
	}
	return len(s.e.dtlsIn) > 0
}

func (s *session) run() {
	defer s.e.wg.Done()
	for !s.startable() {
		select {
		case <-s.wakeC:
		case <-s.ctx.Done():
			return
		}
	}
	conn, err := s.dial()
	if err != nil {
		s.fail(err)
		return
	}
	defer conn.Close()
	hctx, cancel := context.WithTimeout(s.ctx, s.e.cfg.HandshakeTimeout)
	err = conn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		s.fail(err)
		return
	}
	k, err := newSRTPKeys(conn, s.client)
	if err != nil {
		s.fail(err)
		return
	}
	s.keys.Store(k)
	s.e.log.Info("DTLS-SRTP ready", "client", s.client, "profile", k.profile.String())

	// WebRTC media needs nothing more from DTLS; application data (an
	// SCTP association for data channels) is read and dropped so that
	// it cannot stall the connection's reader. The loop ends when the
	// peer closes (close_notify) or the session stops.
	buf := make([]byte, 2048)
	for {
		if _, err := conn.Read(buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
		}
	}
}

// dial makes the DTLS connection over the leg, in the session's role.
func (s *session) dial() (*dtls.Conn, error) {
	verify := func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		err := s.fp.verify(rawCerts)
		if err != nil {
			s.mu.Lock()
			s.certErr = err
			s.mu.Unlock()
		}
		return err
	}
	raddr := s.pc.remote()
	shared := []dtls.Option{
		dtls.WithCertificates(s.e.id.cert),
		dtls.WithSRTPProtectionProfiles(srtpProfiles...),
		// No CA vouches for a WebRTC certificate: the fingerprint
		// signalled in SDP does (RFC 8122 §6).
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(verify),
		dtls.WithLoggerFactory(pionLogs{s.e.log}),
	}
	if s.client {
		opts := make([]dtls.ClientOption, 0, len(shared))
		for _, o := range shared {
			opts = append(opts, o)
		}
		c, err := dtls.ClientWithOptions(s.pc, raddr, opts...)
		if err != nil {
			return nil, fmt.Errorf("webrtc: DTLS client: %w", err)
		}
		return c, nil
	}
	opts := make([]dtls.ServerOption, 0, len(shared)+1)
	for _, o := range shared {
		opts = append(opts, o)
	}
	// The browser must show the certificate its fingerprint names
	// (RFC 5763 §5).
	opts = append(opts, dtls.WithClientAuth(dtls.RequireAnyClientCert))
	c, err := dtls.ServerWithOptions(s.pc, raddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("webrtc: DTLS server: %w", err)
	}
	return c, nil
}

// packetConn is the net.PacketConn pion/dtls runs over: it reads the
// records the plane queued for the endpoint and writes through the
// leg's RTP socket to the address ICE selected. It belongs to one
// session; closing it ends that session's DTLS reads without touching
// the queue.
type packetConn struct {
	e        *Endpoint
	closed   chan struct{}
	once     sync.Once
	deadline *deadline.Deadline
}

func newPacketConn(e *Endpoint) *packetConn {
	return &packetConn{e: e, closed: make(chan struct{}), deadline: deadline.New()}
}

// remote is the browser's address as far as pion/dtls cares: where ICE
// sends; writes go wherever ICE selects at the time.
func (c *packetConn) remote() net.Addr {
	a, _ := c.e.leg.Selected()
	return net.UDPAddrFromAddrPort(a)
}

// ReadFrom returns the next queued record.
func (c *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.deadline.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case rec := <-c.e.dtlsIn:
		if len(rec) > len(b) {
			return 0, nil, io.ErrShortBuffer
		}
		return copy(b, rec), c.remote(), nil
	}
}

// WriteTo sends b to the browser, whatever addr says. A datagram that
// cannot go out (no selected address after an ICE restart, a full
// socket buffer) is lost as on the network, and DTLS retransmits.
func (c *packetConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if err := c.e.leg.Send(b); err != nil {
		c.e.log.Debug("DTLS record not sent", "err", err)
	}
	return len(b), nil
}

// Close ends reads and writes; it may be called more than once.
func (c *packetConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// LocalAddr is the leg's RTP address.
func (c *packetConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.e.leg.Addr()) }

// SetDeadline sets the read deadline; writes never block.
func (c *packetConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline bounds ReadFrom (pion/dtls cancels reads with a past
// deadline).
func (c *packetConn) SetReadDeadline(t time.Time) error {
	c.deadline.Set(t)
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (c *packetConn) SetWriteDeadline(time.Time) error { return nil }

// pionLogs hands pion/dtls's records to the endpoint's logger. A
// peer's misbehaviour is its failure, not ours: errors are warnings.
type pionLogs struct{ log *slog.Logger }

func (p pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{p.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)                 {}
func (l pionLogger) Tracef(string, ...any)        {}
func (l pionLogger) Debug(msg string)             { l.log.Debug(msg) }
func (l pionLogger) Debugf(f string, args ...any) { l.logf(slog.LevelDebug, f, args) }
func (l pionLogger) Info(msg string)              { l.log.Info(msg) }
func (l pionLogger) Infof(f string, args ...any)  { l.logf(slog.LevelInfo, f, args) }
func (l pionLogger) Warn(msg string)              { l.log.Warn(msg) }
func (l pionLogger) Warnf(f string, args ...any)  { l.logf(slog.LevelWarn, f, args) }
func (l pionLogger) Error(msg string)             { l.log.Warn(msg) }
func (l pionLogger) Errorf(f string, args ...any) { l.logf(slog.LevelWarn, f, args) }
func (l pionLogger) logf(lv slog.Level, f string, args []any) {
	if l.log.Enabled(context.Background(), lv) {
		l.log.Log(context.Background(), lv, fmt.Sprintf(f, args...))
	}
}
