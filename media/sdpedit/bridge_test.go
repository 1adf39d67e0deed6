package sdpedit

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"

	"github.com/hlas-voip/hlas/media"
)

// The relay's ICE and DTLS parameters in the tests.
const (
	relayUfrag = "rLy1"
	relayPwd   = "r3lAyPassw0rdF0rICEx22zz"
	relayFP    = "sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9"
)

func toBrowser(setup, mid string) Bridge {
	return Bridge{To: WebRTC, Ufrag: relayUfrag, Pwd: relayPwd, Fingerprint: relayFP, Setup: setup, Mid: mid}
}

func mustParse(t *testing.T, s string) *Description {
	t.Helper()
	d, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConvert(t *testing.T) {
	tests := []struct {
		name string
		in   string
		eps  []Endpoint
		bs   []Bridge
		want string
	}{
		{"Chrome offer to a phone: RTP/AVP, no ICE, DTLS, BUNDLE, mid, msid, extmap, rtcp-fb, rtcp-mux", chromeOffer,
			[]Endpoint{{relay4, 30000, 30001}}, []Bridge{{To: Plain}}, crlf(`v=0
o=- 6964523786520462466 2 IN IP4 203.0.113.10
s=-
t=0 0
m=audio 30000 RTP/AVP 111 63 9 0 8 13 110 126
c=IN IP4 203.0.113.10
a=rtcp:30001 IN IP4 203.0.113.10
a=sendrecv
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:2404235415 cname:Zh2VnUfGSsH0w9Lq
a=ssrc:2404235415 msid:3b1c7e0e-5b0a-4a36-9a55-0b8f0e2b6c11 f0c1f0a2-9d6e-4b3c-8e57-2a7c4d1b9e30
`)},
		{"baresip offer to a browser: SAVPF, ICE-lite, actpass, mids 0 and 1, one host candidate each", baresipOffer,
			[]Endpoint{{relay4, 30000, 30000}, {relay4, 30002, 30002}}, []Bridge{toBrowser("actpass", "0"), toBrowser("actpass", "1")}, crlf(`v=0
o=- 1434281356 3424924931 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
a=tool:baresip 3.10.1
a=ice-lite
m=audio 30000 UDP/TLS/RTP/SAVPF 96 9 0 8 101
b=AS:88
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=ptime:20
a=sendrecv
a=label:1
a=ssrc:2519633004 cname:ee0e7fa0-cfd3-4bd8-a7e0-04ac3db6c2b6
a=mid:0
a=ice-ufrag:rLy1
a=ice-pwd:r3lAyPassw0rdF0rICEx22zz
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9
a=setup:actpass
a=rtcp-mux
a=candidate:2082404213 1 udp 2130706431 203.0.113.10 30000 typ host
a=end-of-candidates
m=video 30002 UDP/TLS/RTP/SAVPF 97
b=AS:2000
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=1;profile-level-id=42e01f
a=rtcp-fb:* nack pli
a=sendrecv
a=label:2
a=mid:1
a=ice-ufrag:rLy1
a=ice-pwd:r3lAyPassw0rdF0rICEx22zz
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9
a=setup:actpass
a=rtcp-mux
a=candidate:2082404213 1 udp 2130706431 203.0.113.10 30002 typ host
a=end-of-candidates
`)},
		{"phone's answer to a browser: passive, the offer's mid, IPv6 relay", baresipAnswer,
			[]Endpoint{{relay6, 30004, 0}}, []Bridge{toBrowser("passive", "0")}, crlf(`v=0
o=- 2114839517 1948232012 IN IP6 2001:db8:ffff::1
s=-
c=IN IP6 2001:db8:ffff::1
t=0 0
a=tool:baresip 3.10.1
a=ice-lite
m=audio 30004 UDP/TLS/RTP/SAVPF 0 126
a=rtpmap:0 PCMU/8000
a=rtpmap:126 telephone-event/8000
a=fmtp:126 0-15
a=ptime:20
a=sendrecv
a=mid:0
a=ice-ufrag:rLy1
a=ice-pwd:r3lAyPassw0rdF0rICEx22zz
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9
a=setup:passive
a=rtcp-mux
a=candidate:3230628218 1 udp 2130706431 2001:db8:ffff::1 30004 typ host
a=end-of-candidates
`)},
		{"browser's answer before gathering to a phone: 0.0.0.0 is no hold, session fingerprint dropped", chromeAnswer,
			[]Endpoint{{relay4, 30006, 30007}}, []Bridge{{To: Plain}}, crlf(`v=0
o=- 3547926186364557384 2 IN IP4 203.0.113.10
s=-
t=0 0
m=audio 30006 RTP/AVP 0 101
c=IN IP4 203.0.113.10
a=rtcp:30007 IN IP4 203.0.113.10
a=sendrecv
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=ssrc:1829384756 cname:pQ7rS2tU9vW4xY1z
`)},
		{"max-bundle Chrome to a phone: bundle-only video stays disabled, the data channel is disabled", chromeMaxBundle,
			[]Endpoint{{relay4, 30008, 30009}, {}, {}}, []Bridge{{To: Plain}, {To: Plain}, {To: Plain}}, crlf(`v=0
o=- 1 2 IN IP4 203.0.113.10
s=-
t=0 0
m=audio 30008 RTP/AVP 111 0
c=IN IP4 203.0.113.10
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
m=video 0 RTP/AVP 96 97
c=IN IP4 0.0.0.0
m=application 0 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
`)},
		{"linphone's ICE to a browser: its candidates and credentials replaced; SDES to a browser disabled",
			linphoneOffer + "m=audio 7080 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n",
			[]Endpoint{{relay4, 30010, 30010}, {}}, []Bridge{toBrowser("actpass", "0"), toBrowser("actpass", "1")}, crlf(`v=0
o=alice 3416 1287 IN IP4 203.0.113.10
s=Talk
c=IN IP4 203.0.113.10
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
a=ice-lite
m=audio 30010 UDP/TLS/RTP/SAVPF 96 97 0 8 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:101 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
a=mid:0
a=ice-ufrag:rLy1
a=ice-pwd:r3lAyPassw0rdF0rICEx22zz
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9
a=setup:actpass
a=rtcp-mux
a=candidate:2082404213 1 udp 2130706431 203.0.113.10 30010 typ host
a=end-of-candidates
m=audio 0 UDP/TLS/RTP/SAVPF 0
a=mid:1
`)},
		{"a phone's one stream offered to a browser in a BUNDLE group of its own", baresipAnswer,
			[]Endpoint{{relay4, 30012, 0}}, []Bridge{{To: WebRTC, Ufrag: relayUfrag, Pwd: relayPwd, Fingerprint: relayFP, Setup: "actpass", Mid: "0", Bundle: true}}, crlf(`v=0
o=- 2114839517 1948232012 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
a=tool:baresip 3.10.1
a=ice-lite
a=group:BUNDLE 0
m=audio 30012 UDP/TLS/RTP/SAVPF 0 126
a=rtpmap:0 PCMU/8000
a=rtpmap:126 telephone-event/8000
a=fmtp:126 0-15
a=ptime:20
a=sendrecv
a=mid:0
a=ice-ufrag:rLy1
a=ice-pwd:r3lAyPassw0rdF0rICEx22zz
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9
a=setup:actpass
a=rtcp-mux
a=candidate:2082404213 1 udp 2130706431 203.0.113.10 30012 typ host
a=end-of-candidates
`)},
		{"nil bridges: Rewrite", baresipAnswer, []Endpoint{{relay4, 30000, 30001}}, nil, crlf(`v=0
o=- 2114839517 1948232012 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
a=tool:baresip 3.10.1
m=audio 30000 RTP/AVP 0 126
a=rtpmap:0 PCMU/8000
a=rtpmap:126 telephone-event/8000
a=fmtp:126 0-15
a=ptime:20
a=sendrecv
`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustParse(t, tt.in)
			out, err := d.Convert(tt.eps, tt.bs)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", out, tt.want)
			}
			if err := pionReadsConverted(d, tt.eps, tt.bs, out); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestConvertKeepsSessionDTLS: a stream kept as it is beside a converted
// one keeps the session-level fingerprint and setup the conversion
// dropped, as its own.
func TestConvertKeepsSessionDTLS(t *testing.T) {
	in := crlf(`v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
a=fingerprint:sha-256 AA:BB
a=setup:actpass
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
m=audio 4000 UDP/TLS/RTP/SAVPF 0
a=setup:active
a=candidate:1 1 udp 1 192.0.2.1 4000 typ host
m=audio 4002 UDP/TLS/RTP/SAVPF 0
`)
	d := mustParse(t, in)
	out, err := d.Convert([]Endpoint{{}, {relay4, 30000, 30001}}, []Bridge{{}, {To: Plain}})
	if err != nil {
		t.Fatal(err)
	}
	want := crlf(`v=0
o=- 1 1 IN IP4 203.0.113.10
s=-
c=IN IP4 203.0.113.10
t=0 0
m=audio 4000 UDP/TLS/RTP/SAVPF 0
c=IN IP4 192.0.2.1
a=setup:active
a=candidate:1 1 udp 1 192.0.2.1 4000 typ host
a=fingerprint:sha-256 AA:BB
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
m=audio 30000 RTP/AVP 0
`)
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

// pionReadsConverted checks a converted description with pion/sdp, and
// each WebRTC stream's candidate with pion/ice: what each receiver
// parses is what the conversion promised, and the payload formats are
// the sender's.
func pionReadsConverted(in *Description, eps []Endpoint, bs []Bridge, out []byte) error {
	var p sdp.SessionDescription
	if err := p.Unmarshal(out); err != nil {
		return fmt.Errorf("pion/sdp refuses the output: %w", err)
	}
	if len(p.MediaDescriptions) != len(in.Streams) {
		return fmt.Errorf("pion/sdp sees %d m-lines, want %d", len(p.MediaDescriptions), len(in.Streams))
	}
	_, lite := p.Attribute("ice-lite")
	anyWeb := false
	for i, m := range p.MediaDescriptions {
		var b Bridge
		if bs != nil {
			b = bs[i]
		}
		proto := strings.Join(m.MediaName.Protos, "/")
		live := in.Streams[i].Port != 0 && in.Bridgeable(i, b.To)
		if b.To == Keep {
			if proto != in.Streams[i].Proto {
				return fmt.Errorf("stream %d: proto %s, want %s kept", i, proto, in.Streams[i].Proto)
			}
			continue
		}
		if !live {
			if m.MediaName.Port.Value != 0 {
				return fmt.Errorf("stream %d: port %d, want 0 (disabled)", i, m.MediaName.Port.Value)
			}
			continue
		}
		if m.MediaName.Port.Value != eps[i].RTP {
			return fmt.Errorf("stream %d: port %d, want %d", i, m.MediaName.Port.Value, eps[i].RTP)
		}
		if !slices.Equal(m.MediaName.Formats, slices.Collect(in.formats(i))) {
			return fmt.Errorf("stream %d: formats %v changed", i, m.MediaName.Formats)
		}
		c := p.ConnectionInformation
		if m.ConnectionInformation != nil {
			c = m.ConnectionInformation
		}
		if c == nil || c.Address == nil || c.Address.Address != eps[i].Addr.Unmap().String() {
			return fmt.Errorf("stream %d: connection %+v, want the relay's %s", i, c, eps[i].Addr)
		}
		has := func(name string) bool {
			_, ok := m.Attribute(name)
			if !ok {
				_, ok = p.Attribute(name)
			}
			return ok
		}
		switch b.To {
		case Plain:
			if proto != "RTP/AVP" {
				return fmt.Errorf("stream %d: proto %s towards a phone", i, proto)
			}
			for _, a := range []string{"fingerprint", "setup", "ice-ufrag", "ice-pwd", "candidate", "end-of-candidates",
				"rtcp-fb", "extmap", "mid", "msid", "rtcp-mux", "group", "msid-semantic", "crypto", "ice-lite"} {
				if has(a) {
					return fmt.Errorf("stream %d: a=%s towards a phone", i, a)
				}
			}
		case WebRTC:
			anyWeb = true
			if proto != "UDP/TLS/RTP/SAVPF" {
				return fmt.Errorf("stream %d: proto %s towards a browser", i, proto)
			}
			for _, a := range []struct{ name, want string }{
				{"ice-ufrag", b.Ufrag}, {"ice-pwd", b.Pwd}, {"fingerprint", b.Fingerprint}, {"setup", b.Setup}, {"rtcp-mux", ""},
			} {
				if v, ok := m.Attribute(a.name); !ok || v != a.want {
					return fmt.Errorf("stream %d: a=%s %q, want %q", i, a.name, v, a.want)
				}
			}
			if has("crypto") || has("rtcp") {
				return fmt.Errorf("stream %d: a=crypto or a=rtcp towards a browser", i)
			}
			for _, a := range p.Attributes {
				if a.Key == "group" && !slices.ContainsFunc(bs, func(b Bridge) bool { return b.Bundle && a.Value == "BUNDLE "+b.Mid }) {
					return fmt.Errorf("a=group:%s towards a browser", a.Value)
				}
			}
			var cands []ice.Candidate
			for _, a := range m.Attributes {
				if a.Key == "candidate" {
					c, err := ice.UnmarshalCandidate(a.Value)
					if err != nil {
						return fmt.Errorf("stream %d: pion/ice refuses a=candidate:%s: %w", i, a.Value, err)
					}
					cands = append(cands, c)
				}
			}
			if len(cands) != 1 || cands[0].Address() != eps[i].Addr.Unmap().String() || cands[0].Port() != eps[i].RTP ||
				cands[0].Type() != ice.CandidateTypeHost || cands[0].Component() != 1 {
				return fmt.Errorf("stream %d: candidates %v, want one host on the relay's %s:%d", i, cands, eps[i].Addr, eps[i].RTP)
			}
		}
	}
	if lite != anyWeb {
		return fmt.Errorf("session a=ice-lite %v with WebRTC streams %v", lite, anyWeb)
	}
	return nil
}

func TestOnHold(t *testing.T) {
	tests := []struct {
		name string
		sdp  string
		want bool
	}{
		{"WebRTC before gathering: port 9, c=0.0.0.0", chromeAnswer, false},
		{"WebRTC after gathering", chromeOffer, false},
		{"RFC 2543 hold of a phone", holdReinvite, true},
		{"phone talking", baresipAnswer, false},
		{"WebRTC sendonly", strings.Replace(chromeOffer, "a=sendrecv", "a=sendonly", 1), true},
		{"SDES with c=0.0.0.0 is a hold", strings.Replace(sdesOffer, "c=IN IP4 192.0.2.30", "c=IN IP4 0.0.0.0", 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.sdp).Streams[0].OnHold(); got != tt.want {
				t.Errorf("OnHold %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWebRTC(t *testing.T) {
	tests := []struct {
		name string
		sdp  string
		want bool
	}{
		{"Chrome offer", chromeOffer, true},
		{"Chrome answer, session-level fingerprint", chromeAnswer, true},
		{"SDES RTP/SAVP", sdesOffer, false},
		{"plain", baresipOffer, false},
		{"SAVPF without a fingerprint", strings.Replace(chromeOffer, "a=fingerprint:", "a=x-fingerprint:", 1), false},
		{"data channel only", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.sdp).WebRTC(); got != tt.want {
				t.Errorf("WebRTC %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBridgeable(t *testing.T) {
	plain := func(m string) string {
		return "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" + m
	}
	tests := []struct {
		name string
		sdp  string
		to   Profile
		want bool
	}{
		{"Chrome to a phone", chromeOffer, Plain, true},
		{"Chrome to a browser (it is one)", chromeOffer, WebRTC, false},
		{"baresip to a browser", baresipOffer, WebRTC, true},
		{"baresip to a phone (it is one)", baresipOffer, Plain, false},
		{"RTP/AVPF to a browser", plain("m=audio 4000 RTP/AVPF 0\r\n"), WebRTC, true},
		{"SDES to a browser", sdesOffer, WebRTC, false},
		{"T.38 to a browser", t38Offer, WebRTC, false},
		{"only telephone-event and CN", plain("m=audio 4000 RTP/AVP 101 13\r\na=rtpmap:101 telephone-event/8000\r\n"), WebRTC, false},
		{"only RED, RTX and FEC", plain("m=video 4000 RTP/AVP 96 97 98\r\na=rtpmap:96 red/90000\r\na=rtpmap:97 RTX/90000\r\na=rtpmap:98 ulpfec/90000\r\n"), WebRTC, false},
		{"a dynamic type without rtpmap counts as a codec", plain("m=audio 4000 RTP/AVP 101 96\r\na=rtpmap:101 telephone-event/8000\r\n"), WebRTC, true},
		{"no formats", plain("m=audio 4000 RTP/AVP\r\n"), WebRTC, false},
		{"non-numeric format", plain("m=audio 4000 RTP/AVP x\r\n"), WebRTC, false},
		{"anything to Keep", t38Offer, Keep, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.sdp).Bridgeable(0, tt.to); got != tt.want {
				t.Errorf("Bridgeable %v, want %v", got, tt.want)
			}
		})
	}
	if mustParse(t, baresipOffer).Bridgeable(2, WebRTC) {
		t.Error("a stream out of range is bridgeable")
	}
}

func TestCommonCodec(t *testing.T) {
	answer := func(m string) string {
		return "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" + m
	}
	offer := mustParse(t, chromeOffer)
	tests := []struct {
		name string
		sdp  string
		want bool
	}{
		{"PCMU and telephone-event", baresipAnswer, true},
		{"static type without rtpmap", answer("m=audio 4000 RTP/AVP 8\r\n"), true},
		{"opus under another number", answer("m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 OPUS/48000/2\r\n"), true},
		{"G.729 only", answer("m=audio 4000 RTP/AVP 18\r\n"), false},
		{"only telephone-event in common", answer("m=audio 4000 RTP/AVP 18 126\r\na=rtpmap:126 telephone-event/8000\r\n"), false},
		{"only comfort noise in common", answer("m=audio 4000 RTP/AVP 13\r\n"), false},
		{"same number, another codec", answer("m=audio 4000 RTP/AVP 111\r\na=rtpmap:111 AMR/8000\r\n"), false},
		{"opus at another rate", answer("m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus/16000\r\n"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.sdp).CommonCodec(0, offer, 0); got != tt.want {
				t.Errorf("CommonCodec %v, want %v", got, tt.want)
			}
		})
	}
	if mustParse(t, baresipAnswer).CommonCodec(0, offer, 1) || mustParse(t, baresipAnswer).CommonCodec(0, nil, 0) {
		t.Error("a stream out of range has a common codec")
	}
}

func TestTransport(t *testing.T) {
	got := mustParse(t, chromeOffer).Transport(0)
	want := Transport{Ufrag: "Xq8H", Pwd: "uQjyZ3mD4q1Zc7Ht9kL0pR2s",
		Fingerprint: "sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B",
		Setup:       "actpass", Mid: "0"}
	if got != want {
		t.Errorf("Chrome offer: %+v", got)
	}
	if err := got.Check(); err != nil {
		t.Error(err)
	}
	// Session-level values fill in, media-level ones win.
	got = mustParse(t, crlf(`v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
a=ice-ufrag:sess
a=ice-pwd:sessionpasswordsession1
a=fingerprint:sha-1 AA:BB
a=setup:passive
a=mid:not-here
m=audio 9 UDP/TLS/RTP/SAVPF 0
c=IN IP4 0.0.0.0
a=ice-ufrag:medi
a=setup:active 
a=fingerprint:sha-256 CC:DD
a=fingerprint:sha-512 EE:FF
`)).Transport(0)
	want = Transport{Ufrag: "medi", Pwd: "sessionpasswordsession1", Fingerprint: "sha-256 CC:DD", Setup: "active"}
	if got != want {
		t.Errorf("session and media level: %+v, want %+v", got, want)
	}
	if tr := mustParse(t, baresipOffer).Transport(0); tr != (Transport{}) {
		t.Errorf("plain offer: %+v", tr)
	}
	// Several fingerprints (RFC 8122 §5): a SHA-2 one wins over an
	// earlier sha-1 one, which the relay could not verify with.
	got = mustParse(t, crlf(`v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
m=audio 9 UDP/TLS/RTP/SAVPF 0
c=IN IP4 0.0.0.0
a=ice-ufrag:medi
a=ice-pwd:sessionpasswordsession1
a=setup:actpass
a=fingerprint:sha-1 AA:BB
a=fingerprint:sha-256 CC:DD
`)).Transport(0)
	if got.Fingerprint != "sha-256 CC:DD" {
		t.Errorf("sha-1 listed first: fingerprint %q, want the sha-256 one", got.Fingerprint)
	}
}

func TestTransportCheck(t *testing.T) {
	ok := Transport{Ufrag: "abcd", Pwd: "abcdefghijklmnopqrstuv", Fingerprint: "sha-256 AB:cd:01", Setup: "active", Mid: "audio"}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*Transport)
	}{
		{"no ufrag", func(t *Transport) { t.Ufrag = "" }},
		{"ufrag of 3", func(t *Transport) { t.Ufrag = "abc" }},
		{"ufrag with a space", func(t *Transport) { t.Ufrag = "ab cd" }},
		{"ufrag over 256", func(t *Transport) { t.Ufrag = strings.Repeat("a", 257) }},
		{"pwd of 21", func(t *Transport) { t.Pwd = strings.Repeat("a", 21) }},
		{"pwd with a colon", func(t *Transport) { t.Pwd = strings.Repeat("a", 21) + ":" }},
		{"no fingerprint", func(t *Transport) { t.Fingerprint = "" }},
		{"fingerprint without hash", func(t *Transport) { t.Fingerprint = "AB:CD" }},
		{"fingerprint not hex", func(t *Transport) { t.Fingerprint = "sha-256 AB:GG" }},
		{"fingerprint with a trailing colon", func(t *Transport) { t.Fingerprint = "sha-256 AB:CD:" }},
		{"fingerprint with two spaces", func(t *Transport) { t.Fingerprint = "sha-256  AB:CD" }},
		{"no setup", func(t *Transport) { t.Setup = "" }},
		{"holdconn", func(t *Transport) { t.Setup = "holdconn" }},
		{"mid with a space", func(t *Transport) { t.Mid = "a b" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := ok
			tt.edit(&tr)
			if err := tr.Check(); !errors.Is(err, media.ErrBadSDP) {
				t.Errorf("%+v: %v, want ErrBadSDP", tr, err)
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	d := mustParse(t, baresipOffer)
	ep := []Endpoint{{relay4, 30000, 30000}, {relay4, 30002, 30002}}
	good := toBrowser("actpass", "0")
	tests := []struct {
		name string
		eps  []Endpoint
		bs   []Bridge
	}{
		{"too few bridges", ep, []Bridge{good}},
		{"unknown profile", ep, []Bridge{good, {To: 7}}},
		{"converted without an endpoint", []Endpoint{{}, ep[1]}, []Bridge{good, good}},
		{"no ufrag", ep, []Bridge{good, {To: WebRTC, Pwd: relayPwd, Fingerprint: relayFP, Setup: "actpass"}}},
		{"line break in the pwd", ep, []Bridge{good, {To: WebRTC, Ufrag: relayUfrag, Pwd: relayPwd + "\r\na=x", Fingerprint: relayFP, Setup: "actpass"}}},
		{"setup holdconn", ep, []Bridge{good, toBrowser("holdconn", "1")}},
		{"mid with a space", ep, []Bridge{good, toBrowser("actpass", "1 2")}},
		{"bad endpoint", []Endpoint{{relay4, 0, 0}, ep[1]}, []Bridge{good, good}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := d.Convert(tt.eps, tt.bs)
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !errors.Is(err, ErrEndpoint) || errors.Is(err, media.ErrBadSDP) {
				t.Fatalf("%v: want ErrEndpoint", err)
			}
		})
	}
	// A disabled stream needs no endpoint and no ICE, only a sound mid.
	d = mustParse(t, t38Offer)
	if _, err := d.Convert([]Endpoint{{}}, []Bridge{{To: WebRTC, Mid: "0"}}); err != nil {
		t.Errorf("disabled stream: %v", err)
	}
	if _, err := d.Convert([]Endpoint{{}}, []Bridge{{To: WebRTC, Mid: "a\tb"}}); !errors.Is(err, ErrEndpoint) {
		t.Errorf("disabled stream with a bad mid: %v", err)
	}
}

// TestConvertMaxSize: a conversion that would outgrow MaxSize is refused
// as the sender's fault, not written.
func TestConvertMaxSize(t *testing.T) {
	body := padTo(session+strings.Repeat("m=audio 4000 RTP/AVP 0\r\n", MaxStreams), MaxSize-100)
	d := mustParse(t, body)
	eps := make([]Endpoint, MaxStreams)
	bs := make([]Bridge, MaxStreams)
	for i := range eps {
		eps[i] = Endpoint{relay4, 30000 + 2*i, 0}
		bs[i] = toBrowser("actpass", fmt.Sprint(i))
	}
	if _, err := d.Convert(eps, bs); !errors.Is(err, media.ErrBadSDP) {
		t.Fatalf("%v, want ErrBadSDP", err)
	}
}
