package plane

import (
	"errors"
	"net/netip"
)

// Errors a Secure returns for the plane to count the packet under the
// right reason; any other error counts as srtp_failed.
var (
	// ErrNotReady: no SRTP keys yet (the DTLS handshake has not
	// completed).
	ErrNotReady = errors.New("plane: secure transport not ready")
	// ErrTooBig: the protected packet would not fit the read buffer.
	ErrTooBig = errors.New("plane: packet too big to protect")
	// ErrNoDestination is Leg.Send's answer when the party has no
	// address to send to yet (no ICE check passed, or nothing signalled).
	ErrNoDestination = errors.New("plane: no destination")
)

// Secure terminates a secure media transport on a leg: ICE-lite and
// DTLS-SRTP for a WebRTC party (media/webrtc). The plane demultiplexes
// what arrives on the leg's RTP socket by its first byte (RFC 7983) and
// calls the Secure for STUN, DTLS and SRTP/SRTCP; what the partner leg
// forwards to the party is protected by it before sending.
//
// Every method but Detached is called by the leg's reader goroutines
// with the leg's lock held, one call at a time per leg: it must return
// at once (never block, never call the leg's methods) and may keep
// scratch state without locking of its own. Buffers passed in are the
// reader's: they are valid only during the call. SetSecure compares
// Secures with ==, so an implementation is a pointer type.
type Secure interface {
	// STUN handles a STUN message from src (an ICE connectivity check,
	// or a consent freshness check of RFC 7675, which is the same). It
	// may write an answer into resp, which the plane sends back to src
	// from the RTP socket, and returns the answer's length (0: none) and
	// what the message proved about src. validated says src already
	// passed a check since the last RestartICE: a Secure that limits
	// its STUN rate must not let strangers spend the budget of the
	// party's own checks (consent freshness keeps the call alive).
	STUN(msg []byte, src netip.AddrPort, validated bool, resp []byte) (n int, r STUNResult)
	// DTLS takes a DTLS record from src, a source that passed an ICE
	// check. It copies what it keeps; false means its queue was full and
	// the record is dropped (queue_full).
	DTLS(rec []byte, src netip.AddrPort) bool
	// Unprotect authenticates and decrypts an SRTP packet (rtcp false)
	// or an SRTCP packet in place and returns the plain length.
	Unprotect(pkt []byte, rtcp bool) (int, error)
	// Protect encrypts a plain RTP or RTCP packet in place, into the
	// spare capacity of pkt, and returns the protected length; ErrTooBig
	// if that does not fit cap(pkt).
	Protect(pkt []byte, rtcp bool) (int, error)
	// Detached tells the Secure that the leg no longer uses it: it was
	// replaced or removed with SetSecure, or the leg or its plane was
	// closed. It is called once, without the leg's lock held.
	Detached()
}

// STUNResult is what a Secure made of a STUN message; the leg's ICE
// state (which sources may send media, where media goes) follows it.
type STUNResult uint8

// Results of Secure.STUN.
const (
	// STUNConsumed: handled, nothing learned (an indication, a
	// keepalive); not counted as a drop.
	STUNConsumed STUNResult = iota
	// STUNRefused: malformed, unauthenticated or unwanted; counted as
	// dropped (stun_refused), whether or not an error response went
	// back.
	STUNRefused
	// STUNRateLimited: over the leg's STUN budget, ignored; counted as
	// dropped (stun_rate_limited).
	STUNRateLimited
	// STUNValid: an authenticated Binding request (RFC 8445 §7.3): src
	// may send media, and receives it until a nomination says otherwise.
	STUNValid
	// STUNNominated: STUNValid with USE-CANDIDATE (RFC 8445 §7.3.1.5):
	// media goes to src from now on.
	STUNNominated
)

// Kinds of datagram on a secure leg's RTP port, by their first byte
// (RFC 7983 §7).
const (
	pktOther = iota
	pktSTUN
	pktDTLS
	pktSRTP // RTP or RTCP, SRTP or not
)

// demux tells what a datagram is by its first byte (RFC 7983): STUN
// 0-3, DTLS 20-63, RTP/RTCP 128-191. ZRTP (16-19) and TURN channels
// (64-79) have no business here.
func demux(b []byte) int {
	if len(b) == 0 {
		return pktOther
	}
	switch c := b[0]; {
	case c <= 3:
		return pktSTUN
	case c >= 20 && c <= 63:
		return pktDTLS
	case c >= 128 && c <= 191:
		return pktSRTP
	}
	return pktOther
}

// maxValidated is how many sources of one party a leg remembers as
// ICE-validated: one per candidate pair the party checks (host,
// server-reflexive, relayed, per interface), the oldest forgotten first.
const maxValidated = 8

// secureLeg is the ICE state of a leg with a Secure. ICE replaces
// latching there: media is accepted only from sources that passed a
// connectivity check, and goes to the one nominated (or, until a
// nomination, the latest checked).
type secureLeg struct {
	s         Secure
	valid     [maxValidated]netip.AddrPort
	next      int // the slot of valid the next new source takes
	selected  netip.AddrPort
	nominated bool
}

// validated reports whether src passed a check.
func (sl *secureLeg) validated(src netip.AddrPort) bool {
	if src == sl.selected {
		return src.IsValid()
	}
	for _, v := range sl.valid {
		if v == src {
			return src.IsValid()
		}
	}
	return false
}

// checked records that src passed a check, nominated or not, and
// reports whether the selected address moved.
func (sl *secureLeg) checked(src netip.AddrPort, nominated bool) (moved bool) {
	if !sl.validated(src) {
		sl.valid[sl.next] = src
		sl.next = (sl.next + 1) % maxValidated
	}
	if !nominated && sl.nominated {
		return false
	}
	sl.nominated = sl.nominated || nominated
	moved = sl.selected != src
	sl.selected = src
	return moved
}

// restart forgets what ICE validated (RFC 8445 §9).
func (sl *secureLeg) restart() {
	*sl = secureLeg{s: sl.s}
}

// secureVerdict maps a Secure's error to a drop reason.
func secureVerdict(err error) int8 {
	switch {
	case errors.Is(err, ErrNotReady):
		return dropNotReady
	case errors.Is(err, ErrTooBig):
		return dropTooBig
	}
	return dropSRTPFailed
}
