package plane

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

// RFC 7983 §7: the first byte tells STUN, DTLS and RTP/RTCP apart; the
// ranges between belong to ZRTP (16-19) and TURN channels (64-79), or to
// nothing.
func TestDemux(t *testing.T) {
	for c := range 256 {
		want := pktOther
		switch {
		case c <= 3:
			want = pktSTUN
		case c >= 20 && c <= 63:
			want = pktDTLS
		case c >= 128 && c <= 191:
			want = pktSRTP
		}
		if got := demux([]byte{byte(c), 0}); got != want {
			t.Errorf("first byte %d: %d, want %d", c, got, want)
		}
	}
	if demux(nil) != pktOther {
		t.Error("an empty datagram is nothing")
	}
}

// ICE in place of latching (RFC 8445 §7.3.1.5, §12.1): checked sources
// may send; media goes to the nominated one, before a nomination to the
// latest checked.
func TestSecureLegChecks(t *testing.T) {
	a, b, c := ap("198.51.100.1:5000"), ap("198.51.100.2:5000"), ap("192.168.1.2:5000")
	var sl secureLeg
	if sl.validated(a) || sl.validated(netip.AddrPort{}) {
		t.Fatal("validated before any check")
	}
	steps := []struct {
		src       netip.AddrPort
		nominated bool
		moved     bool
		selected  netip.AddrPort
	}{
		{a, false, true, a},  // first check: media goes there
		{b, false, true, b},  // latest check wins before a nomination
		{b, false, false, b}, // consent check: nothing moves
		{a, true, true, a},   // USE-CANDIDATE
		{b, false, false, a}, // a later plain check does not undo it
		{c, true, true, c},   // a new nomination does
	}
	for i, s := range steps {
		if moved := sl.checked(s.src, s.nominated); moved != s.moved {
			t.Errorf("step %d: moved %v, want %v", i, moved, s.moved)
		}
		if sl.selected != s.selected {
			t.Errorf("step %d: selected %v, want %v", i, sl.selected, s.selected)
		}
	}
	for _, src := range []netip.AddrPort{a, b, c} {
		if !sl.validated(src) {
			t.Errorf("%v not validated", src)
		}
	}
	if sl.validated(ap("203.0.113.9:5000")) {
		t.Error("a stranger validated")
	}

	// The oldest of more than maxValidated sources is forgotten, never
	// the selected one.
	for i := range maxValidated {
		sl.checked(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 9), false)
	}
	if sl.validated(a) || sl.validated(b) {
		t.Error("the oldest sources are still validated")
	}
	if !sl.validated(c) || sl.selected != c {
		t.Errorf("the selected source was forgotten: selected %v", sl.selected)
	}

	sl.restart()
	if sl.validated(c) || sl.selected.IsValid() || sl.nominated {
		t.Errorf("after restart: %+v", sl)
	}
}

func TestSecureVerdict(t *testing.T) {
	for err, want := range map[error]int8{
		ErrNotReady:                        dropNotReady,
		fmt.Errorf("x: %w", ErrNotReady):   dropNotReady,
		ErrTooBig:                          dropTooBig,
		errors.New("srtp: auth tag wrong"): dropSRTPFailed,
	} {
		if got := secureVerdict(err); got != want {
			t.Errorf("%v: %s, want %s", err, dropReasons[got], dropReasons[want])
		}
	}
}
