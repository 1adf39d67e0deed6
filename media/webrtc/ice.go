package webrtc

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/hlas-voip/hlas/media/plane"
)

// iceChars are the characters of ice-ufrag and ice-pwd (RFC 8839 §5.4):
// 64 of them, so that a random byte modulo 64 picks one uniformly.
const iceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// Lengths of the local credentials: RFC 8839 §5.4 asks for at least 24
// bits of randomness in the ufrag and 128 in the password (6 bits a
// character).
const (
	ufragLen = 16
	pwdLen   = 32
)

// randomICEString returns n random ice-chars.
func randomICEString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = iceChars[b[i]%64]
	}
	return string(b)
}

// iceCreds are one ICE session's credentials (RFC 8445 §5.3), swapped
// whole on an ICE restart.
type iceCreds struct {
	localUfrag, localPwd   string
	remoteUfrag, remotePwd string // empty until SetRemote
	// key checks and signs MESSAGE-INTEGRITY: the short-term credential
	// of a check sent to us is our own password (RFC 8445 §7.2.2).
	key stun.MessageIntegrity
	// prefix is "<localUfrag>:"; username the whole USERNAME a check
	// must carry, "" while the peer's ufrag is unknown.
	prefix, username string
}

func newICECreds() *iceCreds {
	c := &iceCreds{localUfrag: randomICEString(ufragLen), localPwd: randomICEString(pwdLen)}
	c.key = stun.NewShortTermIntegrity(c.localPwd)
	c.prefix = c.localUfrag + ":"
	return c
}

// withRemote returns c with the peer's credentials.
func (c *iceCreds) withRemote(ufrag, pwd string) *iceCreds {
	n := *c
	n.remoteUfrag, n.remotePwd = ufrag, pwd
	n.username = n.prefix + ufrag
	return &n
}

// usernameOK checks USERNAME (RFC 8445 §7.3): our ufrag first, then the
// peer's. A check that arrives before the peer's credentials (its
// answer may still be on its way through SIP) is judged on our ufrag
// alone; MESSAGE-INTEGRITY with our password still has to hold.
func (c *iceCreds) usernameOK(u []byte) bool {
	if c.username != "" {
		return string(u) == c.username
	}
	return len(u) > len(c.prefix) && string(u[:len(c.prefix)]) == c.prefix
}

// stunState is the STUN responder's scratch, used only by the leg's
// reader (one call at a time).
type stunState struct {
	req, res stun.Message
	unknown  stun.UnknownAttributes
	// A token bucket: tokens left, refilled at rate a second up to
	// burst; last is when it was last refilled.
	tokens      float64
	rate, burst float64
	last        time.Time
}

// allow takes a token, if one is left.
func (s *stunState) allow(now time.Time) bool {
	if !s.last.IsZero() {
		s.tokens = min(s.burst, s.tokens+now.Sub(s.last).Seconds()*s.rate)
	} else {
		s.tokens = s.burst
	}
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// Sizes of STUN's framing (RFC 8489 §5, §14.7).
const (
	stunHeader      = 20
	fingerprintAttr = 8 // FINGERPRINT: type, length, CRC-32
	magicCookie     = 0x2112A442
)

// understood are the comprehension-required attributes (below 0x8000)
// a check may carry (RFC 8445 §7.1, §16.1): anything else gets 420
// (RFC 8489 §6.3.1). MESSAGE-INTEGRITY-SHA256 is tolerated: the check
// is authenticated by MESSAGE-INTEGRITY, which ICE mandates.
func understood(t stun.AttrType) bool {
	switch t {
	case stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256,
		stun.AttrPriority, stun.AttrUseCandidate:
		return true
	}
	return t >= 0x8000
}

// handleSTUN is the ICE-lite responder (RFC 8445 §2.5, §7.3): it answers
// authenticated Binding requests, which are connectivity checks and,
// later, consent freshness checks (RFC 7675 §5.1), with a success
// response proving that the source reached us. A lite agent sends no
// checks of its own, so responses to it are refused.
//
// The rate limit applies to sources that have not passed a check
// (validated false): a stranger flooding the port must not starve the
// browser's own consent checks (RFC 7675), which would end the call.
func (e *Endpoint) handleSTUN(b []byte, src netip.AddrPort, validated bool, resp []byte) (int, plane.STUNResult) {
	st := &e.stun
	if !validated && !st.allow(e.now()) {
		return 0, plane.STUNRateLimited
	}
	// Over UDP a datagram is one whole message (RFC 8489 §6.1), its
	// length a multiple of 4 (§5); checks end with FINGERPRINT (RFC 8445
	// §7.2.2). What fails this is no STUN for us: dropped silently.
	if len(b) < stunHeader+fingerprintAttr || len(b)%4 != 0 ||
		int(binary.BigEndian.Uint16(b[2:4]))+stunHeader != len(b) ||
		binary.BigEndian.Uint32(b[4:8]) != magicCookie ||
		stun.AttrType(binary.BigEndian.Uint16(b[len(b)-fingerprintAttr:])) != stun.AttrFingerprint ||
		binary.BigEndian.Uint16(b[len(b)-fingerprintAttr+2:]) != 4 {
		return 0, plane.STUNRefused
	}
	m := &st.req
	m.Raw = b
	if err := m.Decode(); err != nil {
		return 0, plane.STUNRefused
	}
	if n := len(m.Attributes); n == 0 || m.Attributes[n-1].Type != stun.AttrFingerprint {
		return 0, plane.STUNRefused
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		return 0, plane.STUNRefused
	}
	switch m.Type {
	case stun.BindingRequest:
	case stun.NewType(stun.MethodBinding, stun.ClassIndication):
		return 0, plane.STUNConsumed // a keepalive (RFC 8445 §11)
	default:
		return 0, plane.STUNRefused
	}

	// Short-term credentials (RFC 8489 §9.1.3): no USERNAME or no
	// MESSAGE-INTEGRITY is 400, a wrong one 401, neither signed.
	creds := e.ice.Load()
	user, err := m.Get(stun.AttrUsername)
	if err != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return st.errorResponse(resp, stun.CodeBadRequest, nil), plane.STUNRefused
	}
	if !creds.usernameOK(user) || creds.key.Check(m) != nil {
		return st.errorResponse(resp, stun.CodeUnauthorized, nil), plane.STUNRefused
	}
	// Authenticated from here on: answers are signed.
	st.unknown = st.unknown[:0]
	for _, a := range m.Attributes {
		if !understood(a.Type) {
			st.unknown = append(st.unknown, a.Type)
		}
	}
	if len(st.unknown) > 0 {
		return st.errorResponse(resp, stun.CodeUnknownAttribute, creds.key, st.unknown), plane.STUNRefused
	}
	// A lite agent is always controlled (RFC 8445 §6.1.1): a peer that
	// claims to be controlled too is told of the conflict whatever the
	// tie-breakers, so that it takes the controlling role (§7.3.1.1).
	if m.Contains(stun.AttrICEControlled) {
		return st.errorResponse(resp, stun.CodeRoleConflict, creds.key), plane.STUNRefused
	}

	addr := stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())}
	if err := st.res.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&addr, creds.key, stun.Fingerprint); err != nil {
		return 0, plane.STUNRefused
	}
	n := copy(resp, st.res.Raw)
	if n < len(st.res.Raw) {
		n = 0
	}
	if m.Contains(stun.AttrUseCandidate) {
		e.checked()
		return n, plane.STUNNominated
	}
	e.checked()
	return n, plane.STUNValid
}

// errorResponse builds an error response to the request in st.req into
// resp, signed with key when the request was authenticated, and
// returns its length (0 if it does not fit).
func (st *stunState) errorResponse(resp []byte, code stun.ErrorCode, key stun.MessageIntegrity, unknown ...stun.UnknownAttributes) int {
	setters := []stun.Setter{stun.NewTransactionIDSetter(st.req.TransactionID), stun.BindingError, code}
	for _, u := range unknown {
		setters = append(setters, u)
	}
	if key != nil {
		setters = append(setters, key)
	}
	setters = append(setters, stun.Fingerprint)
	if err := st.res.Build(setters...); err != nil {
		return 0
	}
	if len(st.res.Raw) > len(resp) {
		return 0
	}
	return copy(resp, st.res.Raw)
}
