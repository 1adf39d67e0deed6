package webrtc

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/hlas-voip/hlas/media/plane"
)

const (
	peerUfrag = "PeerUfrag"
	peerPwd   = "PeerPasswordPeerPassword"
)

var peerSrc = netip.MustParseAddrPort("198.51.100.7:61000")

// newResponder is an Endpoint without a leg, enough for its STUN
// responder; its clock stands still unless the test moves it.
func newResponder(rate int, remoteKnown bool) (e *Endpoint, now *time.Time) {
	t0 := time.Unix(1700000000, 0)
	now = &t0
	e = &Endpoint{now: func() time.Time { return *now }, id: &Identity{fingerprint: "sha-256 00"}}
	e.stun.rate, e.stun.burst = float64(rate), 2*float64(rate)
	c := newICECreds()
	if remoteKnown {
		c = c.withRemote(peerUfrag, peerPwd)
	}
	e.ice.Store(c)
	return e, now
}

// attr is a raw attribute setter.
type attr struct {
	t stun.AttrType
	v []byte
}

func (a attr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

var (
	controlling  = attr{stun.AttrICEControlling, u64(42)}
	controlled   = attr{stun.AttrICEControlled, u64(42)}
	priority     = attr{stun.AttrPriority, u32(1845501695)}
	useCandidate = attr{stun.AttrUseCandidate, nil}
)

// check builds a Binding request as a browser sends it (RFC 8445 §7.2.2).
func check(t testing.TB, user, pwd string, extra ...stun.Setter) []byte {
	t.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	if user != "" {
		setters = append(setters, stun.NewUsername(user))
	}
	setters = append(setters, extra...)
	if pwd != "" {
		setters = append(setters, stun.NewShortTermIntegrity(pwd))
	}
	setters = append(setters, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// raw builds a STUN message from setters as they are.
func raw(t testing.TB, setters ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestSTUNResponder(t *testing.T) {
	e, _ := newResponder(1000, true)
	local := e.Local()
	user := local.Ufrag + ":" + peerUfrag
	good := func(extra ...stun.Setter) []byte {
		return check(t, user, local.Pwd, append([]stun.Setter{priority, controlling}, extra...)...)
	}
	tests := []struct {
		name   string
		msg    []byte
		result plane.STUNResult
		code   int  // the error response's code; 0: a success response, -1: no answer
		signed bool // the answer carries MESSAGE-INTEGRITY
	}{
		{"RFC 8445 7.3: connectivity check", good(), plane.STUNValid, 0, true},
		{"RFC 8445 7.3.1.5: USE-CANDIDATE nominates", good(useCandidate), plane.STUNNominated, 0, true},
		{"RFC 7675: consent check, no ICE attributes", check(t, user, local.Pwd), plane.STUNValid, 0, true},
		{"comprehension-optional attribute ignored (GOOG-NETWORK-INFO)", good(attr{0xC057, u32(1)}), plane.STUNValid, 0, true},
		{"RFC 8489 9.1.3: wrong password", check(t, user, "wrong-password-wrong-password", priority, controlling), plane.STUNRefused, 401, false},
		{"RFC 8445 7.3: someone else's ufrag", check(t, "nobody:"+peerUfrag, local.Pwd, priority, controlling), plane.STUNRefused, 401, false},
		{"RFC 8445 7.3: wrong remote ufrag", check(t, local.Ufrag+":intruder", local.Pwd, priority, controlling), plane.STUNRefused, 401, false},
		{"RFC 8489 9.1.3: no USERNAME", check(t, "", local.Pwd, priority, controlling), plane.STUNRefused, 400, false},
		{"RFC 8489 9.1.3: no MESSAGE-INTEGRITY", check(t, user, "", priority, controlling), plane.STUNRefused, 400, false},
		{"RFC 8445 7.3.1.1: role conflict, both controlled", good(controlled), plane.STUNRefused, 487, true},
		{"RFC 8489 6.3.1: unknown comprehension-required attribute", good(attr{0x0030, u32(7)}), plane.STUNRefused, 420, true},
		{"RFC 8445 7.2.2: no FINGERPRINT", raw(t, stun.TransactionID, stun.BindingRequest, stun.NewUsername(user), stun.NewShortTermIntegrity(local.Pwd)), plane.STUNRefused, -1, false},
		{"RFC 8445 11: Binding indication is a keepalive", raw(t, stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.Fingerprint), plane.STUNConsumed, -1, false},
		{"a lite agent sends no requests: a response is unwanted", raw(t, stun.TransactionID, stun.BindingSuccess, stun.NewShortTermIntegrity(local.Pwd), stun.Fingerprint), plane.STUNRefused, -1, false},
		{"other method", raw(t, stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.NewUsername(user), stun.NewShortTermIntegrity(local.Pwd), stun.Fingerprint), plane.STUNRefused, -1, false},
		{"empty", nil, plane.STUNRefused, -1, false},
		{"header only", []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, plane.STUNRefused, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]byte(nil), tt.msg...)
			resp := make([]byte, 2048)
			n, res := e.handleSTUN(tt.msg, peerSrc, false, resp)
			if res != tt.result {
				t.Errorf("result %d, want %d", res, tt.result)
			}
			if !bytes.Equal(in, tt.msg) {
				t.Error("the request was changed")
			}
			if tt.code < 0 {
				if n != 0 {
					t.Errorf("answered with %d bytes", n)
				}
				return
			}
			checkAnswer(t, resp[:n], tt.msg, local.Pwd, tt.code, tt.signed)
		})
	}
}

// checkAnswer decodes an answer to req and checks what RFC 8445 §7.3.1
// and RFC 8489 require of it.
func checkAnswer(t *testing.T, b, req []byte, pwd string, code int, signed bool) {
	t.Helper()
	var q, m stun.Message
	if err := stun.Decode(req, &q); err != nil {
		t.Fatal(err)
	}
	if err := stun.Decode(b, &m); err != nil {
		t.Fatalf("answer does not decode: %v", err)
	}
	if m.TransactionID != q.TransactionID {
		t.Error("answer's transaction ID differs")
	}
	if err := stun.Fingerprint.Check(&m); err != nil {
		t.Errorf("answer's FINGERPRINT: %v", err)
	}
	if signed {
		if err := stun.NewShortTermIntegrity(pwd).Check(&m); err != nil {
			t.Errorf("answer's MESSAGE-INTEGRITY with the local password: %v", err)
		}
	} else if m.Contains(stun.AttrMessageIntegrity) {
		t.Error("answer to an unauthenticated request is signed")
	}
	if code == 0 {
		if m.Type != stun.BindingSuccess {
			t.Fatalf("answer %v, want a Binding success response", m.Type)
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(&m); err != nil {
			t.Fatal(err)
		}
		if got, _ := netip.AddrFromSlice(xa.IP); netip.AddrPortFrom(got.Unmap(), uint16(xa.Port)) != peerSrc {
			t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", xa, peerSrc)
		}
		return
	}
	if m.Type != stun.BindingError {
		t.Fatalf("answer %v, want a Binding error response", m.Type)
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(&m); err != nil {
		t.Fatal(err)
	}
	if int(ec.Code) != code {
		t.Errorf("error %d, want %d", ec.Code, code)
	}
	if code == 420 {
		var ua stun.UnknownAttributes
		if err := ua.GetFrom(&m); err != nil || len(ua) != 1 || ua[0] != 0x0030 {
			t.Errorf("UNKNOWN-ATTRIBUTES %v (%v), want 0x0030", ua, err)
		}
	}
}

// Tampering with a signed check is caught by MESSAGE-INTEGRITY, even
// when FINGERPRINT is recomputed.
func TestSTUNTampered(t *testing.T) {
	e, _ := newResponder(1000, true)
	local := e.Local()
	var m stun.Message
	if err := stun.Decode(check(t, local.Ufrag+":"+peerUfrag, local.Pwd, priority, controlling), &m); err != nil {
		t.Fatal(err)
	}
	// Flip a bit of PRIORITY, then redo FINGERPRINT.
	v, _ := m.Get(stun.AttrPriority)
	v[3] ^= 1
	b := append([]byte(nil), m.Raw[:len(m.Raw)-fingerprintAttr]...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-stunHeader+fingerprintAttr))
	b = binary.BigEndian.AppendUint16(b, uint16(stun.AttrFingerprint))
	b = binary.BigEndian.AppendUint16(b, 4)
	b = binary.BigEndian.AppendUint32(b, stun.FingerprintValue(b[:len(b)-4]))
	resp := make([]byte, 2048)
	n, res := e.handleSTUN(b, peerSrc, false, resp)
	if res != plane.STUNRefused {
		t.Fatalf("tampered check: %d", res)
	}
	checkAnswer(t, resp[:n], b, local.Pwd, 401, false)
}

// A check may come before the answer carrying the peer's ufrag: it is
// judged on our ufrag and password (RFC 8445 §7.3).
func TestSTUNEarlyCheck(t *testing.T) {
	e, _ := newResponder(1000, false)
	local := e.Local()
	resp := make([]byte, 2048)
	if _, res := e.handleSTUN(check(t, local.Ufrag+":whoever", local.Pwd, controlling), peerSrc, false, resp); res != plane.STUNValid {
		t.Errorf("early check: %d", res)
	}
	if !e.iceOK.Load() {
		t.Error("a passed check did not mark ICE as validated")
	}
	for _, user := range []string{local.Ufrag + ":", local.Ufrag, "other:" + local.Ufrag} {
		if _, res := e.handleSTUN(check(t, user, local.Pwd, controlling), peerSrc, false, resp); res != plane.STUNRefused {
			t.Errorf("USERNAME %q: %d", user, res)
		}
	}
}

// The responder answers at most its rate, in bursts of twice as many.
func TestSTUNRateLimit(t *testing.T) {
	e, now := newResponder(2, true)
	local := e.Local()
	msg := check(t, local.Ufrag+":"+peerUfrag, local.Pwd, controlling)
	resp := make([]byte, 2048)
	results := func(k int) (answered, limited int) {
		for range k {
			switch n, res := e.handleSTUN(msg, peerSrc, false, resp); {
			case res == plane.STUNRateLimited && n == 0:
				limited++
			case res == plane.STUNValid && n > 0:
				answered++
			default:
				t.Fatalf("result %d, %d bytes", res, n)
			}
		}
		return
	}
	if a, l := results(6); a != 4 || l != 2 {
		t.Errorf("burst: %d answered, %d limited; want 4, 2", a, l)
	}
	*now = now.Add(time.Second) // two more tokens
	if a, l := results(3); a != 2 || l != 1 {
		t.Errorf("a second later: %d answered, %d limited; want 2, 1", a, l)
	}
	*now = now.Add(time.Hour) // never more than the burst
	if a, l := results(5); a != 4 || l != 1 {
		t.Errorf("an hour later: %d answered, %d limited; want 4, 1", a, l)
	}
}

// RFC 8839 §5.4: ufrag and password are ice-chars, long enough, and not
// the same twice.
func TestICECredentials(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		c := newICECreds()
		for _, s := range []string{c.localUfrag, c.localPwd} {
			if strings.Trim(s, iceChars) != "" {
				t.Fatalf("%q has characters outside ice-char", s)
			}
			if seen[s] {
				t.Fatalf("%q twice", s)
			}
			seen[s] = true
		}
		if len(c.localUfrag) < 8 || len(c.localPwd) < 24 {
			t.Fatalf("ufrag %q, pwd %q too short", c.localUfrag, c.localPwd)
		}
	}
}

// FuzzSTUN: whatever arrives on a WebRTC leg's port with a first byte of
// 0-3 reaches the responder. It must not crash or change the datagram;
// it validates a source only for a check signed with the local password
// and naming the local ufrag; every answer is STUN with the request's
// transaction ID and a good FINGERPRINT.
func FuzzSTUN(f *testing.F) {
	e, _ := newResponder(1<<30, true)
	local := e.Local()
	user := local.Ufrag + ":" + peerUfrag
	for _, seed := range [][]byte{
		check(f, user, local.Pwd, priority, controlling, useCandidate),
		check(f, user, local.Pwd, priority, controlled),
		check(f, user, "bad", priority, controlling),
		check(f, user, local.Pwd, attr{0x0030, nil}),
		check(f, "", local.Pwd),
		raw(f, stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.Fingerprint),
	} {
		f.Add(seed)
	}
	resp := make([]byte, 2048)
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		n, res := e.handleSTUN(b, peerSrc, false, resp)
		if !bytes.Equal(in, b) {
			t.Fatal("the datagram was changed")
		}
		if n < 0 || n > len(resp) {
			t.Fatalf("answer of %d bytes", n)
		}
		if res == plane.STUNValid || res == plane.STUNNominated {
			var m stun.Message
			if err := stun.Decode(in, &m); err != nil {
				t.Fatalf("validated by an undecodable message: %v", err)
			}
			if m.Type != stun.BindingRequest {
				t.Fatalf("validated by a %v", m.Type)
			}
			if u, err := m.Get(stun.AttrUsername); err != nil || string(u) != user {
				t.Fatalf("validated with USERNAME %q", u)
			}
			if err := stun.NewShortTermIntegrity(local.Pwd).Check(&m); err != nil {
				t.Fatalf("validated without integrity: %v", err)
			}
			if (res == plane.STUNNominated) != m.Contains(stun.AttrUseCandidate) {
				t.Fatalf("nominated %v, USE-CANDIDATE %v", res == plane.STUNNominated, m.Contains(stun.AttrUseCandidate))
			}
		}
		if n == 0 {
			return
		}
		var m, q stun.Message
		if err := stun.Decode(resp[:n], &m); err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
		if err := stun.Fingerprint.Check(&m); err != nil {
			t.Fatalf("answer's FINGERPRINT: %v", err)
		}
		if err := stun.Decode(in, &q); err != nil || m.TransactionID != q.TransactionID {
			t.Fatalf("answer to a message %v with another transaction ID", err)
		}
	})
}

// A stranger that spends the leg's STUN budget does not starve the
// checks of the validated browser: its consent checks keep the call.
func TestSTUNRateLimitSparesValidated(t *testing.T) {
	e, _ := newResponder(2, true)
	local := e.Local()
	msg := check(t, local.Ufrag+":"+peerUfrag, local.Pwd, controlling)
	resp := make([]byte, 2048)
	stranger := netip.MustParseAddrPort("198.51.100.66:4000")
	limited := 0
	for range 50 {
		if _, res := e.handleSTUN(msg, stranger, false, resp); res == plane.STUNRateLimited {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("the stranger was never limited")
	}
	for i := range 10 {
		if n, res := e.handleSTUN(msg, peerSrc, true, resp); res != plane.STUNValid || n == 0 {
			t.Fatalf("check %d of the validated source: result %d, %d bytes; want an answer", i, res, n)
		}
	}
}
