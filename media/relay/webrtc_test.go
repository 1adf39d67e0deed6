package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	pwebrtc "github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/media"
)

// How long a test waits for ICE, DTLS and the first packets on
// loopback: a bound on a hang, not a performance claim.
const settle = 10 * time.Second

var lo = netip.MustParseAddr("127.0.0.1")

// phoneSSRC is the SSRC of the fake phone's RTP.
const phoneSSRC = 0x1234abcd

// browser is a pion PeerConnection playing the WebRTC client, on
// loopback only, with a PCMU track to send and what it receives.
type browser struct {
	t     *testing.T
	pc    *pwebrtc.PeerConnection
	track *pwebrtc.TrackLocalStaticRTP
	got   chan []byte // payloads received
	conn  chan struct{}
	once  sync.Once
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	var se pwebrtc.SettingEngine
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	me := &pwebrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	api := pwebrtc.NewAPI(pwebrtc.WithSettingEngine(se), pwebrtc.WithMediaEngine(me))
	pc, err := api.NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, pc: pc, got: make(chan []byte, 256), conn: make(chan struct{})}
	b.track, err = pwebrtc.NewTrackLocalStaticRTP(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, "audio", "hlas-test")
	if err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case b.got <- p.Payload:
			default:
			}
		}
	})
	pc.OnConnectionStateChange(func(s pwebrtc.PeerConnectionState) {
		if s == pwebrtc.PeerConnectionStateConnected {
			b.once.Do(func() { close(b.conn) })
		}
	})
	t.Cleanup(func() { pc.GracefulClose() })
	return b
}

func (b *browser) addTrack() {
	b.t.Helper()
	if _, err := b.pc.AddTrack(b.track); err != nil {
		b.t.Fatal(err)
	}
}

// offer makes the browser's offer, candidates gathered (as JsSIP sends
// it).
func (b *browser) offer() []byte {
	b.t.Helper()
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.setLocal(o)
}

func (b *browser) answer(offer []byte) []byte {
	b.t.Helper()
	if err := b.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		b.t.Fatalf("pion refuses the offer: %v\n%s", err, offer)
	}
	if len(b.pc.GetSenders()) == 0 {
		b.addTrack()
	}
	a, err := b.pc.CreateAnswer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.setLocal(a)
}

func (b *browser) setLocal(d pwebrtc.SessionDescription) []byte {
	b.t.Helper()
	done := pwebrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(d); err != nil {
		b.t.Fatal(err)
	}
	<-done
	return []byte(b.pc.LocalDescription().SDP)
}

func (b *browser) accept(answer []byte) {
	b.t.Helper()
	if err := b.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		b.t.Fatalf("pion refuses the answer: %v\n%s", err, answer)
	}
}

func (b *browser) waitConnected() {
	b.t.Helper()
	select {
	case <-b.conn:
	case <-time.After(settle):
		b.t.Fatalf("no ICE and DTLS with the relay: %v", b.pc.ConnectionState())
	}
}

// payload is what packet i carries: recognisable, so that what arrives
// is shown to be the plaintext that was sent.
func payload(from string, i int) []byte {
	return []byte(fmt.Sprintf("%s-%04d-%s", from, i, strings.Repeat("x", 140)))
}

// browserToPhone sends RTP from the browser until the phone has n of
// them, plain, with the browser's payloads.
func browserToPhone(t *testing.T, b *browser, p *phone, n int) {
	t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(settle)
	got := 0
	for i := 0; got < n; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the phone got %d of %d packets from the browser", got, n)
		}
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(160 * i)}, Payload: payload("browser", i)}
		if err := b.track.WriteRTP(pkt); err != nil {
			t.Fatal(err)
		}
		_ = p.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		for {
			k, _, err := p.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			var r rtp.Packet
			if err := r.Unmarshal(buf[:k]); err != nil || r.PayloadType != 0 || !bytes.HasPrefix(r.Payload, []byte("browser-")) {
				t.Fatalf("the phone got what is not the browser's plain RTP: %x", buf[:k])
			}
			got++
		}
	}
}

// phoneToBrowser sends plain RTP from the phone to dst (the relay) until
// the browser has n of its payloads.
func phoneToBrowser(t *testing.T, p *phone, dst netip.AddrPort, b *browser, n int) {
	t.Helper()
	deadline := time.Now().Add(settle)
	got := 0
	for i := 0; got < n; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the browser got %d of %d packets from the phone", got, n)
		}
		raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(160 * i), SSRC: phoneSSRC},
			Payload: payload("phone", i)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.conn.WriteToUDPAddrPort(raw, dst); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(20 * time.Millisecond)
	drain:
		for {
			select {
			case pl := <-b.got:
				if !bytes.HasPrefix(pl, []byte("phone-")) {
					t.Fatalf("the browser got %q, not the phone's payload", pl)
				}
				got++
			case <-timeout:
				break drain
			}
		}
	}
}

// phoneSDP is a plain phone's description with the given formats.
func (p *phone) plainSDP(formats string, extra string) []byte {
	a := p.addr()
	return []byte(fmt.Sprintf("v=0\r\no=- 7 7 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio %[2]d RTP/AVP %[3]s\r\n%[4]sa=sendrecv\r\n",
		a.Addr(), a.Port(), formats, extra))
}

// mustPion reads a description with pion/sdp, the independent reader.
func mustPion(t *testing.T, body []byte) *sdp.SessionDescription {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.Unmarshal(body); err != nil {
		t.Fatalf("pion/sdp refuses:\n%s\n%v", body, err)
	}
	return &d
}

// assertPlain checks a description for a phone: RTP/AVP, nothing of ICE,
// DTLS or the browser's extras.
func assertPlain(t *testing.T, body []byte) {
	t.Helper()
	d := mustPion(t, body)
	if len(d.MediaDescriptions) == 0 {
		t.Fatalf("no m-line:\n%s", body)
	}
	for _, m := range d.MediaDescriptions {
		if p := strings.Join(m.MediaName.Protos, "/"); p != "RTP/AVP" {
			t.Errorf("proto %s towards the phone", p)
		}
	}
	for _, bad := range []string{"a=ice-", "a=candidate", "a=fingerprint", "a=setup", "a=group", "a=mid", "a=rtcp-fb", "a=extmap", "a=rtcp-mux", "a=end-of-candidates"} {
		if bytes.Contains(body, []byte(bad)) {
			t.Errorf("%s towards the phone:\n%s", bad, body)
		}
	}
}

// assertWebRTC checks a description for a browser.
func assertWebRTC(t *testing.T, body []byte, setup string) {
	t.Helper()
	d := mustPion(t, body)
	if _, ok := d.Attribute("ice-lite"); !ok {
		t.Errorf("no session-level a=ice-lite:\n%s", body)
	}
	for _, a := range d.Attributes {
		// Only the BUNDLE group of one of an offer's single stream.
		if a.Key == "group" && (setup != "actpass" || len(d.MediaDescriptions) != 1 || a.Value != "BUNDLE 0") {
			t.Errorf("a=group:%s towards the browser:\n%s", a.Value, body)
		}
	}
	for _, m := range d.MediaDescriptions {
		if p := strings.Join(m.MediaName.Protos, "/"); p != "UDP/TLS/RTP/SAVPF" {
			t.Errorf("proto %s towards the browser", p)
		}
		if v, _ := m.Attribute("setup"); v != setup {
			t.Errorf("a=setup:%s, want %s", v, setup)
		}
		for _, a := range []string{"ice-ufrag", "ice-pwd", "fingerprint", "mid", "rtcp-mux", "candidate", "end-of-candidates"} {
			if _, ok := m.Attribute(a); !ok {
				t.Errorf("no a=%s towards the browser:\n%s", a, body)
			}
		}
	}
}

// TestBridgeBrowserCalls: a browser calls a phone. The phone gets plain
// RTP/AVP, the browser an ICE-lite, DTLS-SRTP answer; audio flows both
// ways, decrypted towards the phone and encrypted towards the browser;
// a re-INVITE keeps the Endpoint; Delete ends everything.
func TestBridgeBrowserCalls(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRelay(t, Config{})
	ctx := context.Background()
	b := newBrowser(t)
	b.addTrack()
	ph := newPhone(t, "127.0.0.1", "b1")

	offer := b.offer()
	toPhone, err := r.Offer(ctx, &media.Request{CallID: "w1", FromTag: "a1", SDP: offer, Source: lo, Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	assertPlain(t, toPhone)
	if !bytes.Contains(toPhone, []byte("a=rtpmap:0 PCMU/8000")) {
		t.Errorf("the browser's codecs are not offered to the phone:\n%s", toPhone)
	}
	phoneSends := relayAddr(t, toPhone)

	// The phone declares its SSRC (RFC 5576), as baresip does: pion, an
	// offerer, takes no other.
	phoneAnswer := ph.plainSDP("0", fmt.Sprintf("a=rtpmap:0 PCMU/8000\r\na=ssrc:%d cname:phone\r\n", phoneSSRC))
	toBrowser, err := r.Answer(ctx, &media.Request{CallID: "w1", FromTag: "b1", ToTag: "a1", SDP: phoneAnswer, Source: lo, Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	assertWebRTC(t, toBrowser, "passive")
	b.accept(toBrowser)
	b.waitConnected()

	browserToPhone(t, b, ph, 5)
	phoneToBrowser(t, ph, phoneSends, b, 5)

	// A re-INVITE from the browser: same Endpoint, same credentials,
	// same ports, and the audio goes on.
	r.mu.Lock()
	ep := r.byID["w1"].streams[0].ep
	r.mu.Unlock()
	again, err := r.Offer(ctx, &media.Request{CallID: "w1", FromTag: "a1", ToTag: "b1", SDP: b.offer(), Source: lo, Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	if relayAddr(t, again) != phoneSends {
		t.Errorf("re-INVITE moved the phone's relay port: %v then %v", phoneSends, relayAddr(t, again))
	}
	toBrowser2, err := r.Answer(ctx, &media.Request{CallID: "w1", FromTag: "b1", ToTag: "a1", SDP: phoneAnswer, Source: lo, Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	same := r.byID["w1"].streams[0].ep == ep
	r.mu.Unlock()
	if !same {
		t.Error("the re-INVITE made a new Endpoint")
	}
	if ufrag(t, toBrowser) != ufrag(t, toBrowser2) {
		t.Errorf("the relay's ICE credentials changed without an ICE restart")
	}
	b.accept(toBrowser2)
	browserToPhone(t, b, ph, 3)
	phoneToBrowser(t, ph, phoneSends, b, 3)

	st, err := r.Delete(ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Streams != 1 || st.Caller.Packets < 8 || st.Callee.Packets < 8 {
		t.Errorf("stats %+v", st)
	}
	if r.Calls() != 0 {
		t.Errorf("%d calls after the delete", r.Calls())
	}
	b.pc.GracefulClose()
	r.Close()
}

func ufrag(t *testing.T, body []byte) string {
	t.Helper()
	v, _ := mustPion(t, body).MediaDescriptions[0].Attribute("ice-ufrag")
	return v
}

// TestBridgePhoneCallsBrowser: a phone calls a browser (ReceiverWebRTC):
// the browser gets an ICE-lite actpass offer, answers as pion does
// (active), the phone gets plain RTP/AVP, and audio flows both ways.
func TestBridgePhoneCallsBrowser(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRelay(t, Config{})
	ctx := context.Background()
	ph := newPhone(t, "127.0.0.1", "a1")
	b := newBrowser(t)

	toBrowser, err := r.Offer(ctx, &media.Request{CallID: "w2", FromTag: "a1", SDP: ph.plainSDP("0 8 101", "a=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\n"),
		Source: lo, Local: lo, Advertise: lo, ReceiverWebRTC: true})
	if err != nil {
		t.Fatal(err)
	}
	assertWebRTC(t, toBrowser, "actpass")
	if v, _ := mustPion(t, toBrowser).MediaDescriptions[0].Attribute("mid"); v != "0" {
		t.Errorf("a=mid:%s, want 0", v)
	}
	answer := b.answer(toBrowser)
	toPhone, err := r.Answer(ctx, &media.Request{CallID: "w2", FromTag: "b1", ToTag: "a1", SDP: answer, Source: lo, Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	assertPlain(t, toPhone)
	b.waitConnected()
	phoneSends := relayAddr(t, toPhone)
	phoneToBrowser(t, ph, phoneSends, b, 5)
	browserToPhone(t, b, ph, 5)

	b.pc.GracefulClose()
	r.Close()
	if r.Calls() != 0 {
		t.Errorf("%d calls after Close", r.Calls())
	}
}

// TestBridgeTwoBrowsers: between two WebRTC clients the relay keeps out:
// both descriptions pass unchanged, the browsers connect end to end, and
// the call, relaying nothing, never times out.
func TestBridgeTwoBrowsers(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := &fakeNow{t: time.Now()}
	r := newRelay(t, Config{Timeout: 10 * time.Second, Now: clock.now})
	ctx := context.Background()
	a, b := newBrowser(t), newBrowser(t)
	a.addTrack()
	offer := a.offer()
	out, err := r.Offer(ctx, &media.Request{CallID: "w3", FromTag: "a1", SDP: offer, Source: lo, Local: lo, Advertise: lo, ReceiverWebRTC: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, offer) {
		t.Fatalf("the offer changed:\n%s\n----\n%s", offer, out)
	}
	answer := b.answer(out)
	back, err := r.Answer(ctx, &media.Request{CallID: "w3", FromTag: "b1", ToTag: "a1", SDP: answer, Source: lo, Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, answer) {
		t.Fatalf("the answer changed:\n%s\n----\n%s", answer, back)
	}
	a.accept(back)
	a.waitConnected()
	b.waitConnected()
	clock.add(time.Minute)
	r.Expire()
	if r.Calls() != 1 {
		t.Errorf("a passed-through call timed out: %d calls", r.Calls())
	}
	st, err := r.Delete(ctx, "w3")
	if err != nil || st.Streams != 0 {
		t.Errorf("delete: %+v %v", st, err)
	}
	a.pc.GracefulClose()
	b.pc.GracefulClose()
	r.Close()
}

// TestBridgeNoCommonCodec: without a codec both sides have, the call
// gets media.ErrNoCodec (488), from the answer or already from the
// offer, and the relay keeps nothing of a refused first offer.
func TestBridgeNoCommonCodec(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRelay(t, Config{})
	ctx := context.Background()
	ph := newPhone(t, "127.0.0.1", "b1")
	b := newBrowser(t)
	b.addTrack()

	// The phone answers G.729 to the browser's Opus, G.722, PCMU, PCMA.
	if _, err := r.Offer(ctx, &media.Request{CallID: "n1", FromTag: "a1", SDP: b.offer(), Local: lo, Advertise: lo}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Answer(ctx, &media.Request{CallID: "n1", FromTag: "b1", ToTag: "a1", SDP: ph.plainSDP("18 101", "a=rtpmap:101 telephone-event/8000\r\n"), Local: lo, Advertise: lo})
	if !errors.Is(err, media.ErrNoCodec) {
		t.Errorf("G.729 answer to a browser: %v, want ErrNoCodec", err)
	}
	if _, err := r.Delete(ctx, "n1"); err != nil {
		t.Fatal(err)
	}

	offers := []struct {
		name      string
		sdp       string
		toBrowser bool
	}{
		{"a browser offers only a data channel to a phone", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
			"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
			"a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n" +
			// and an audio stream with nothing but DTMF
			"m=audio 9 UDP/TLS/RTP/SAVPF 126\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
			"a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\na=mid:1\r\na=rtcp-mux\r\na=rtpmap:126 telephone-event/8000\r\n", false},
		{"a phone offers T.38 and SDES-SRTP to a browser", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
			"m=image 4002 udptl t38\r\nm=audio 4004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n", true},
	}
	for _, o := range offers {
		_, err := r.Offer(ctx, &media.Request{CallID: "n2", FromTag: "a1", SDP: []byte(o.sdp), Local: lo, Advertise: lo, ReceiverWebRTC: o.toBrowser})
		if !errors.Is(err, media.ErrNoCodec) {
			t.Errorf("%s: %v, want ErrNoCodec", o.name, err)
		}
	}
	if r.Calls() != 0 {
		t.Errorf("refused offers left %d calls", r.Calls())
	}
	b.pc.GracefulClose()
	r.Close()
}

// TestBridgeRefusesBadBrowser: a browser's stream whose ICE or DTLS
// parameters are missing is malformed (400), not a call without media;
// and an answer in the wrong profile is refused.
func TestBridgeRefusesBadBrowser(t *testing.T) {
	r := newRelay(t, Config{})
	ctx := context.Background()
	ph := newPhone(t, "127.0.0.1", "b1")
	noPwd := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n" +
		"a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\na=mid:0\r\na=rtcp-mux\r\n"
	if _, err := r.Offer(ctx, &media.Request{CallID: "x1", FromTag: "a1", SDP: []byte(noPwd), Local: lo, Advertise: lo}); !errors.Is(err, media.ErrBadSDP) {
		t.Errorf("browser offer without ice-pwd: %v", err)
	}
	// A phone's offer to a browser answered in plain RTP.
	if _, err := r.Offer(ctx, &media.Request{CallID: "x2", FromTag: "a1", SDP: ph.plainSDP("0", ""), Local: lo, Advertise: lo, ReceiverWebRTC: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Answer(ctx, &media.Request{CallID: "x2", FromTag: "b1", ToTag: "a1", SDP: ph.plainSDP("0", ""), Local: lo, Advertise: lo}); !errors.Is(err, media.ErrBadSDP) {
		t.Errorf("plain answer to a WebRTC offer: %v", err)
	}
}

// TestBridgeBrowserBeforeGathering: a browser's description made before
// ICE gathering (port 9, c=IN IP4 0.0.0.0) is no hold: the phone gets
// the relay's address, and the call is not held.
func TestBridgeBrowserBeforeGathering(t *testing.T) {
	r := newRelay(t, Config{})
	offer := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n" +
		"a=fingerprint:sha-256 " + strings.Repeat("AB:", 31) + "AB\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n" +
		"a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
	out, err := r.Offer(context.Background(), &media.Request{CallID: "g", FromTag: "a1", SDP: []byte(offer), Local: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	assertPlain(t, out)
	if got := relayAddr(t, out); got.Addr() != lo || got.Port() == 9 {
		t.Errorf("the phone is sent to %v:\n%s", got, out)
	}
	r.mu.Lock()
	held := r.byID["g"].held
	r.mu.Unlock()
	if held {
		t.Error("a browser before gathering reads as a hold")
	}
}
