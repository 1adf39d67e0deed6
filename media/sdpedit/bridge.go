package sdpedit

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Profile is how the receiver of a stream transports its media.
type Profile uint8

const (
	// Keep leaves the stream's profile as its sender wrote it (Rewrite).
	Keep Profile = iota
	// Plain is RTP/AVP without ICE or DTLS: a SIP phone.
	Plain
	// WebRTC is UDP/TLS/RTP/SAVPF with ICE and DTLS-SRTP on one muxed
	// port (RFC 8829 §5.1.2): a browser.
	WebRTC
)

// proto is the m= proto a converted stream gets.
func (p Profile) proto() string {
	if p == WebRTC {
		return "UDP/TLS/RTP/SAVPF"
	}
	return "RTP/AVP"
}

// Bridge is how Convert changes one stream for its receiver.
type Bridge struct {
	// To is the receiver's profile; Keep converts nothing.
	To Profile
	// Ufrag, Pwd (RFC 8839 §5.4), Fingerprint ("<hash-func> <hex>", the
	// value of a=fingerprint, RFC 8122 §5) and Setup (actpass, active or
	// passive, RFC 4145 §4) are the relay's ICE and DTLS parameters for
	// the stream; To == WebRTC needs them all.
	Ufrag, Pwd, Fingerprint, Setup string
	// Mid is the a=mid written towards a browser (RFC 8843 §5): in an
	// answer the offer's, in an offer the relay's choice; empty writes
	// none.
	Mid string
	// Bundle, in an offer, puts the stream in a BUNDLE group of its own
	// (a=group:BUNDLE <Mid> at the session level, RFC 8843 §7.2): the
	// same transport as without, as browsers offer a single m-line, for
	// WebRTC stacks that take no m-line outside a BUNDLE group (pion).
	// Never in an answer: the relay declines bundling m-lines together.
	Bundle bool
}

// errParam is a Bridge or Transport value that does not fit its
// attribute's grammar.
var errParam = errors.New("malformed ICE or DTLS parameter")

// check validates what appendWebRTC will write, so that no value can
// break a line or the grammar of its attribute.
func (b *Bridge) check() error {
	if b.To != WebRTC {
		return nil
	}
	t := Transport{Ufrag: b.Ufrag, Pwd: b.Pwd, Fingerprint: b.Fingerprint, Setup: b.Setup, Mid: b.Mid}
	if err := t.check(); err != nil {
		return err
	}
	if b.Setup == "holdconn" {
		return fmt.Errorf("%w: setup %q", errParam, b.Setup)
	}
	return nil
}

// appendWebRTC adds what a browser needs to reach the relay on a
// stream: its mid, the relay's ICE credentials and DTLS fingerprint and
// role, rtcp-mux, and the relay's one host candidate, component 1, with
// the type preference of a host candidate (RFC 8445 §5.1.2.1), after
// which the relay has no more (RFC 8840 §4.1).
func (b *Bridge) appendWebRTC(out []byte, a netip.Addr, port int) []byte {
	if b.Mid != "" {
		out = appendAttr(out, "mid", b.Mid)
	}
	out = appendAttr(out, "ice-ufrag", b.Ufrag)
	out = appendAttr(out, "ice-pwd", b.Pwd)
	out = appendAttr(out, "fingerprint", b.Fingerprint)
	out = appendAttr(out, "setup", b.Setup)
	out = append(out, "a=rtcp-mux\r\na=candidate:"...)
	out = strconv.AppendUint(out, uint64(foundation(a)), 10)
	out = append(out, " 1 udp 2130706431 "...)
	out = a.AppendTo(out)
	out = append(out, ' ')
	out = strconv.AppendInt(out, int64(port), 10)
	return append(out, " typ host\r\na=end-of-candidates\r\n"...)
}

// bridgeExtra is room for what appendWebRTC adds per stream.
func bridgeExtra(toWebRTC bool) int {
	if toWebRTC {
		return 512
	}
	return 0
}

func appendAttr(out []byte, name, value string) []byte {
	out = append(out, "a="...)
	out = append(out, name...)
	out = append(out, ':')
	out = append(out, value...)
	return append(out, "\r\n"...)
}

// foundation names the relay's candidates by address (RFC 8445 §5.1.1.3:
// same type, base and transport, same foundation): FNV-1a of its bytes.
func foundation(a netip.Addr) uint32 {
	h := uint32(2166136261)
	for _, c := range a.AsSlice() {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// Convert is Rewrite for a relay that bridges profiles: bs[i] says what
// the receiver of Streams[i] speaks (len(bs) must equal len(Streams)). A
// stream with To == Keep is rewritten as Rewrite does. A stream converted
// to a profile it cannot be carried in (see Bridgeable), or that its
// sender disabled, is written disabled (RFC 3264 §8.2): port 0, the
// receiver's proto if it is RTP, a c= without an address if it had a c=,
// and the Bridge's a=mid towards a browser. Any other converted stream
// needs an endpoint, and its payload formats and every line not named
// below pass unchanged: the relay never transcodes.
//
// Towards a phone (To == Plain, from a WebRTC stream) the proto becomes
// RTP/AVP and the stream gets the relay's address and RTP and RTCP ports
// as in Rewrite. Dropped, with the ICE attributes: a=fingerprint, setup,
// tls-id (no DTLS), mid, rtcp-mux, rtcp-mux-only (the relay offers the
// phone a separate RTCP port, which a phone that does not know RFC 5761
// needs and one that does accepts), crypto, and the browser's RTP extras
// a plain phone has no use for: rtcp-fb (AVPF only), extmap,
// extmap-allow-mixed, msid, bundle-only, rid, simulcast, rtcp-rsize,
// identity; at the session level also msid-semantic and a=group (BUNDLE,
// and any other group: groups name mids, which are gone; a group is
// dropped towards a browser too). The a=ssrc and ssrc-group lines stay: they describe the
// RTP that passes.
//
// Towards a browser (To == WebRTC, from a plain RTP/AVP or RTP/AVPF
// stream) the proto becomes UDP/TLS/RTP/SAVPF and RTCP is muxed on the
// RTP port: a=rtcp, a=crypto and the sender's ICE and DTLS attributes,
// mid and rtcp-mux are dropped and the relay's written instead (see
// Bridge), with one host candidate on the endpoint's address and RTP
// port; a=ice-lite is added at the session level. No BUNDLE group joins
// two m-lines: declining BUNDLE leaves each its own transport (RFC 8843
// §7.3.3); see Bridge.Bundle for a group of one. A hold by c=0.0.0.0 becomes the relay's address (the
// direction attribute, if any, stays): a browser reaches the relay by
// ICE whatever c= says.
//
// Keep streams in a description with converted ones get the session-level
// ICE and DTLS attributes that conversion dropped as their own. The
// output is refused with media.ErrBadSDP if it exceeds MaxSize.
func (d *Description) Convert(eps []Endpoint, bs []Bridge) ([]byte, error) {
	if bs == nil {
		bs = make([]Bridge, len(d.media))
	}
	out, err := d.write(eps, bs)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxSize {
		return nil, errf("converted description of %d bytes exceeds %d", len(out), MaxSize)
	}
	return out, nil
}

// Bridgeable reports whether stream i can be converted to profile to: to
// Plain, a WebRTC stream; to WebRTC, a plain RTP/AVP or RTP/AVPF one; and
// either way only with a payload format that is a codec, not merely
// telephone-event, comfort noise, RTX, RED or FEC. Everything is
// bridgeable to Keep.
func (d *Description) Bridgeable(i int, to Profile) bool {
	if i < 0 || i >= len(d.Streams) {
		return false
	}
	switch to {
	case Keep:
		return true
	case Plain:
		if !d.Streams[i].WebRTC {
			return false
		}
	case WebRTC:
		if !plainProto(d.Streams[i].Proto) {
			return false
		}
	default:
		return false
	}
	maps := d.rtpmaps(i)
	for pt := range d.formats(i) {
		if isCodec(pt, maps) {
			return true
		}
	}
	return false
}

// WebRTC reports whether the sender is a WebRTC client: some stream is
// (Stream.WebRTC).
func (d *Description) WebRTC() bool {
	for _, st := range d.Streams {
		if st.WebRTC {
			return true
		}
	}
	return false
}

// CommonCodec reports whether stream i of d (an answer) has a codec that
// stream j of offer has: the same payload type (with the same encoding
// where both name one), or the same encoding name and clock rate under
// another number. Without one the answerer accepted nothing of the offer
// (RFC 3264 §6.1) and, as the relay does not transcode, there is no call.
func (d *Description) CommonCodec(i int, offer *Description, j int) bool {
	if i < 0 || i >= len(d.media) || offer == nil || j < 0 || j >= len(offer.media) {
		return false
	}
	am, om := d.rtpmaps(i), offer.rtpmaps(j)
	offered := map[string]bool{}
	names := map[string]bool{}
	for pt := range offer.formats(j) {
		if isCodec(pt, om) {
			offered[pt] = true
			if n, ok := om[pt]; ok {
				names[n] = true
			}
		}
	}
	for pt := range d.formats(i) {
		if !isCodec(pt, am) {
			continue
		}
		an, aok := am[pt]
		if offered[pt] {
			if on, ook := om[pt]; !aok || !ook || an == on {
				return true
			}
		}
		if aok && names[an] {
			return true
		}
	}
	return false
}

// formats yields the <fmt> fields of stream i's m-line.
func (d *Description) formats(i int) func(func(string) bool) {
	return func(yield func(string) bool) {
		ml := d.line(d.media[i].start)
		for p := d.media[i].protoEnd; ; {
			s, e := nextField(ml, p)
			if s == e || !yield(ml[s:e]) {
				return
			}
			p = e
		}
	}
}

// rtpmaps maps stream i's payload types to their "<encoding>/<rate>" in
// lower case, from its a=rtpmap lines (the first for each type).
func (d *Description) rtpmaps(i int) map[string]string {
	sec := &d.media[i]
	m := map[string]string{}
	for j := sec.start + 1; j < sec.end; j++ {
		l := d.line(j)
		if !strings.HasPrefix(l, "a=rtpmap:") {
			continue
		}
		var f [3]string
		if splitFields(l[len("a=rtpmap:"):], f[:]) < 2 {
			continue
		}
		enc, rest, _ := strings.Cut(f[1], "/")
		rate, _, _ := strings.Cut(rest, "/")
		if _, ok := m[f[0]]; !ok {
			m[f[0]] = strings.ToLower(enc) + "/" + rate
		}
	}
	return m
}

// isCodec reports whether payload type pt is a codec rather than an
// auxiliary format: by its rtpmap, else by number (the static types of
// RFC 3551 but comfort noise, 13, and the old CN, 19; a dynamic type
// without rtpmap is taken for a codec). A format that is not a number is
// none.
func isCodec(pt string, maps map[string]string) bool {
	n, ok := parsePort(pt)
	if !ok || n > 127 {
		return false
	}
	if enc, ok := maps[pt]; ok {
		name, _, _ := strings.Cut(enc, "/")
		switch name {
		case "telephone-event", "cn", "rtx", "red", "ulpfec", "flexfec", "flexfec-03":
			return false
		}
		return true
	}
	return n != 13 && n != 19
}

// Transport is what a stream says about its ICE and DTLS: the values of
// a=ice-ufrag, ice-pwd (RFC 8839 §5.4), the first a=fingerprint (RFC
// 8122 §5), a=setup (RFC 4145 §4), media level over session level, and
// its a=mid (RFC 8843 §5). Empty where absent.
type Transport struct {
	Ufrag, Pwd, Fingerprint, Setup, Mid string
}

// Transport returns stream i's ICE and DTLS parameters.
func (d *Description) Transport(i int) Transport {
	var t Transport
	if i < 0 || i >= len(d.media) {
		return t
	}
	sec := &d.media[i]
	take := func(from, to int, mid bool) {
		for j := from; j < to; j++ {
			l := d.line(j)
			if l[0] != 'a' {
				continue
			}
			name, val := attr(l)
			val = strings.Trim(val, " \t")
			var f *string
			switch name {
			case "ice-ufrag":
				f = &t.Ufrag
			case "ice-pwd":
				f = &t.Pwd
			case "fingerprint":
				// Several may be listed (RFC 8122 §5): the first with a
				// hash the relay verifies (SHA-2) wins over an earlier
				// sha-1 or md5 one.
				if t.Fingerprint != "" && !strongFingerprint(t.Fingerprint) && strongFingerprint(val) {
					t.Fingerprint = val
					continue
				}
				f = &t.Fingerprint
			case "setup":
				f = &t.Setup
			case "mid":
				if !mid {
					continue
				}
				f = &t.Mid
			default:
				continue
			}
			if *f == "" {
				*f = val
			}
		}
	}
	take(sec.start+1, sec.end, true)
	take(0, d.sessionEnd(), false)
	return t
}

// Check reports whether t holds what a relay terminating the stream's
// ICE and DTLS needs from the browser, each in its attribute's grammar:
// ufrag and pwd (RFC 8839 §5.4: ice-chars, 4 and 22 to 256 of them), a
// fingerprint ("<hash-func> <hex pairs>", RFC 8122 §5), a setup of
// actpass, active or passive, and a mid, if any, without spaces. The
// error wraps media.ErrBadSDP.
func (t Transport) Check() error {
	if err := t.check(); err != nil {
		return errf("%v", err)
	}
	return nil
}

// CheckMid reports whether t's mid, if any, can be written back in an
// answer (see Check); a disabled stream needs no more. The error wraps
// media.ErrBadSDP.
func (t Transport) CheckMid() error {
	if t.Mid != "" && !token(t.Mid, 64) {
		return errf("%v: mid %q", errParam, t.Mid)
	}
	return nil
}

func (t Transport) check() error {
	switch {
	case !iceChars(t.Ufrag, 4):
		return fmt.Errorf("%w: ice-ufrag %q", errParam, t.Ufrag)
	case !iceChars(t.Pwd, 22):
		return fmt.Errorf("%w: ice-pwd %q", errParam, t.Pwd)
	case !fingerprintOK(t.Fingerprint):
		return fmt.Errorf("%w: fingerprint %q", errParam, t.Fingerprint)
	case t.Setup != "actpass" && t.Setup != "active" && t.Setup != "passive":
		return fmt.Errorf("%w: setup %q", errParam, t.Setup)
	case t.Mid != "" && !token(t.Mid, 64):
		return fmt.Errorf("%w: mid %q", errParam, t.Mid)
	}
	return nil
}

// iceChars: min to 256 of ALPHA / DIGIT / "+" / "/" (RFC 8839 §9.1).
func iceChars(s string, min int) bool {
	if len(s) < min || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '+' && c != '/' {
			return false
		}
	}
	return true
}

// fingerprintOK: a hash-func token, one space, 1 to 64 colon-separated
// pairs of hex digits.
func fingerprintOK(s string) bool {
	hash, fp, ok := strings.Cut(s, " ")
	if !ok || !token(hash, 32) || len(fp) < 2 || len(fp) > 64*3-1 || (len(fp)+1)%3 != 0 {
		return false
	}
	for i := 0; i < len(fp); i++ {
		c := fp[i]
		if i%3 == 2 {
			if c != ':' {
				return false
			}
		} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// token: 1 to max visible ASCII characters.
func token(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// strongFingerprint reports a fingerprint whose hash function the relay
// verifies certificates with (media/webrtc: SHA-256, SHA-384, SHA-512).
func strongFingerprint(fp string) bool {
	h, _, _ := strings.Cut(fp, " ")
	switch strings.ToLower(h) {
	case "sha-256", "sha-384", "sha-512":
		return true
	}
	return false
}
