//go:build linux

package webrtc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	pwebrtc "github.com/pion/webrtc/v4"
)

// browser is a pion/webrtc PeerConnection standing in for a browser:
// an audio track it sends (PCMU), what it receives, and the RTCP that
// comes back for its track.
type browser struct {
	pc     *pwebrtc.PeerConnection
	track  *pwebrtc.TrackLocalStaticRTP
	sender *pwebrtc.RTPSender
	media  chan *rtp.Packet
	rtcp   chan rtcp.Packet
	wg     sync.WaitGroup
}

// newBrowser makes a PeerConnection on loopback; passive makes it
// answer a=setup:passive (the relay is then the DTLS client).
func newBrowser(t *testing.T, passive bool) *browser {
	t.Helper()
	var se pwebrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if passive {
		if err := se.SetAnsweringDTLSRole(pwebrtc.DTLSRoleServer); err != nil {
			t.Fatal(err)
		}
	}
	var me pwebrtc.MediaEngine
	pcmu := pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}
	if err := me.RegisterCodec(pwebrtc.RTPCodecParameters{RTPCodecCapability: pcmu, PayloadType: 0}, pwebrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	pc, err := pwebrtc.NewAPI(pwebrtc.WithSettingEngine(se), pwebrtc.WithMediaEngine(&me)).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{pc: pc, media: make(chan *rtp.Packet, 256), rtcp: make(chan rtcp.Packet, 256)}
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
		// pion's goroutine; ReadRTP fails once the connection closes.
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case b.media <- p:
			default:
			}
		}
	})
	if b.track, err = pwebrtc.NewTrackLocalStaticRTP(pcmu, "audio", "browser"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pc.Close()
		b.wg.Wait()
	})
	return b
}

// addTrack adds the audio track and reads the RTCP sent back for it.
func (b *browser) addTrack(t *testing.T) {
	t.Helper()
	var err error
	if b.sender, err = b.pc.AddTrack(b.track); err != nil {
		t.Fatal(err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			pkts, _, err := b.sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				select {
				case b.rtcp <- p:
				default:
				}
			}
		}
	}()
}

// local sets d as the local description and returns it with its
// candidates.
func (b *browser) local(t *testing.T, d pwebrtc.SessionDescription) pwebrtc.SessionDescription {
	t.Helper()
	gathered := pwebrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(d); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return *b.pc.LocalDescription()
}

// sdpParams reads the browser's ICE credentials, fingerprint, a=setup
// and the first m-line's mid from its SDP (attributes at media level
// first, then session level, RFC 8839 §5.4, RFC 8122 §5).
func sdpParams(t *testing.T, d pwebrtc.SessionDescription) (p Params, setup, mid string) {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(d.SDP)); err != nil {
		t.Fatal(err)
	}
	if len(sd.MediaDescriptions) == 0 {
		t.Fatal("no m-line")
	}
	md := sd.MediaDescriptions[0]
	get := func(key string) string {
		t.Helper()
		if v, ok := md.Attribute(key); ok {
			return v
		}
		if v, ok := sd.Attribute(key); ok {
			return v
		}
		t.Fatalf("no a=%s in\n%s", key, d.SDP)
		return ""
	}
	return Params{Ufrag: get("ice-ufrag"), Pwd: get("ice-pwd"), Fingerprint: get("fingerprint")}, get("setup"), get("mid")
}

// relaySDP is what the relay glue writes for the browser: an ICE-lite
// agent with one host candidate, the leg's address (RFC 8839), its
// fingerprint and role (RFC 8122), RTCP muxed (RFC 5761), PCMU, and the
// phone's SSRC.
func relaySDP(mid string, local Params, port uint16, setup string) string {
	return strings.Join([]string{
		"v=0",
		"o=- 1 1 IN IP4 127.0.0.1",
		"s=-",
		"t=0 0",
		"a=ice-lite",
		"a=group:BUNDLE " + mid,
		fmt.Sprintf("m=audio %d UDP/TLS/RTP/SAVPF 0", port),
		"c=IN IP4 127.0.0.1",
		"a=mid:" + mid,
		"a=ice-ufrag:" + local.Ufrag,
		"a=ice-pwd:" + local.Pwd,
		"a=fingerprint:" + local.Fingerprint,
		"a=setup:" + setup,
		"a=rtcp-mux",
		"a=sendrecv",
		"a=rtpmap:0 PCMU/8000",
		"a=msid:hlas phone",
		fmt.Sprintf("a=ssrc:%d cname:hlas", uint32(phoneSSRC)),
		fmt.Sprintf("a=candidate:1 1 udp 2130706431 127.0.0.1 %d typ host", port),
		"a=end-of-candidates",
	}, "\r\n") + "\r\n"
}

// The browser offers (RFC 8829 §5.2.1: a=setup:actpass), the relay
// answers as ICE-lite and DTLS server (a=setup:passive).
func TestBrowserOffers(t *testing.T) {
	br := newBridge(t, Config{})
	b := newBrowser(t, false)
	b.addTrack(t)
	offer, err := b.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, setup, mid := sdpParams(t, b.local(t, offer))
	if setup != "actpass" {
		t.Fatalf("the browser offered a=setup:%s", setup)
	}
	if err := br.e.SetRemote(p, setup); err != nil {
		t.Fatal(err)
	}
	answer := relaySDP(mid, br.e.Local(), br.a.Addr().Port(), "passive")
	if err := b.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	exchange(t, br, b)
}

// The relay offers (a=setup:actpass, RFC 5763 §5). pion answers an
// ICE-lite offer passive whatever it is told (it reads RFC 8445 §6.1.1
// so), which makes the relay the DTLS client; the relay as server to an
// active answerer is TestDTLSSRTPRoles's first case.
func TestRelayOffers(t *testing.T) {
	br := newBridge(t, Config{})
	b := newBrowser(t, true)
	offer := relaySDP("0", br.e.Local(), br.a.Addr().Port(), "actpass")
	if err := b.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	b.addTrack(t)
	answer, err := b.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, setup, _ := sdpParams(t, b.local(t, answer))
	if setup != "passive" {
		t.Fatalf("the browser answered a=setup:%s", setup)
	}
	// The browser may check before its answer reaches the relay (RFC
	// 8445 §7.3: early checks); SetRemote comes when it does.
	if err := br.e.SetRemote(p, setup); err != nil {
		t.Fatal(err)
	}
	exchange(t, br, b)
}

// The browser's certificate is not the one its SDP names (RFC 8122 §5):
// the relay refuses the handshake, the browser's connection fails.
func TestBrowserWrongFingerprint(t *testing.T) {
	br := newBridge(t, Config{})
	b := newBrowser(t, false)
	b.addTrack(t)
	// pion closes the PeerConnection right after its DTLS fails: the
	// state is seen as it changes.
	dtlsFailed := make(chan struct{})
	var once sync.Once
	b.pc.SCTP().Transport().OnStateChange(func(s pwebrtc.DTLSTransportState) {
		if s == pwebrtc.DTLSTransportStateFailed {
			once.Do(func() { close(dtlsFailed) })
		}
	})
	offer, err := b.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, setup, mid := sdpParams(t, b.local(t, offer))
	p.Fingerprint = newIdentity(t).Fingerprint()
	if err := br.e.SetRemote(p, setup); err != nil {
		t.Fatal(err)
	}
	answer := relaySDP(mid, br.e.Local(), br.a.Addr().Port(), "passive")
	if err := b.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the relay to refuse", func() bool { return br.e.Err() != nil })
	if !errors.Is(br.e.Err(), errWrongCertificate) {
		t.Errorf("Err() = %v", br.e.Err())
	}
	select {
	case <-dtlsFailed:
	case <-time.After(15 * time.Second): // only ends a failing test
		t.Fatal("the browser's DTLS did not fail")
	}
	if br.e.Ready() {
		t.Error("keys derived")
	}
}

// exchange waits for ICE and DTLS, then checks media and RTCP both
// ways: SRTP on the browser's side, plain on the phone's.
func exchange(t *testing.T, br *bridge, b *browser) {
	t.Helper()
	waitFor(t, "the browser to connect", func() bool { return b.pc.ConnectionState() == pwebrtc.PeerConnectionStateConnected })
	waitFor(t, "the relay's keys", br.e.Ready)
	waitFor(t, "the browser's nomination", func() bool { _, nom := br.a.Selected(); return nom })
	if sel, _ := br.a.Selected(); sel.Addr() != lo4 {
		t.Errorf("ICE selected %v", sel)
	}

	// Browser to phone: what the PeerConnection writes arrives plain.
	end := time.Now().Add(15 * time.Second)
	var first *rtp.Packet
	for seq := uint16(1); first == nil; seq++ {
		if time.Now().After(end) {
			t.Fatal("no RTP from the browser at the phone")
		}
		if err := b.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: 160 * uint32(seq)}, Payload: payload(seq)}); err != nil {
			t.Fatal(err)
		}
		if d, ok := tryRecv(br.phoneRTP); ok {
			var p rtp.Packet
			if err := p.Unmarshal(d); err != nil {
				t.Fatalf("the phone got no RTP: %v", err)
			}
			if !bytes.Equal(p.Payload, payload(p.SequenceNumber)) {
				t.Fatalf("the phone got packet %d with payload %x: not the plain one", p.SequenceNumber, p.Payload)
			}
			first = &p
		}
	}
	browserSSRC := first.SSRC

	// Phone to browser: plain RTP into the partner leg comes out of the
	// PeerConnection's track decrypted.
	end = time.Now().Add(15 * time.Second)
	for seq, got := uint16(1000), false; !got; seq++ {
		if time.Now().After(end) {
			t.Fatal("no RTP from the phone at the browser")
		}
		br.phoneRTP.WriteToUDPAddrPort(phonePacket(t, phoneSSRC, seq), br.b.Addr())
		select {
		case p := <-b.media:
			if p.SSRC != phoneSSRC || !bytes.Equal(p.Payload, payload(p.SequenceNumber)) {
				t.Fatalf("the browser got %d of %x with payload %x", p.SequenceNumber, p.SSRC, p.Payload)
			}
			got = true
		case <-time.After(20 * time.Millisecond):
		}
	}

	// SRTCP from the browser reaches the phone's RTCP port as RTCP.
	rr := &rtcp.ReceiverReport{SSRC: browserSSRC, Reports: []rtcp.ReceptionReport{{SSRC: phoneSSRC, TotalLost: 3, Jitter: 160}}}
	if err := b.pc.WriteRTCP([]rtcp.Packet{rr}); err != nil {
		t.Fatal(err)
	}
	for found := false; !found; {
		d, from := recv(t, br.phoneRTCP)
		if from != rtcpAddr(br.b) {
			t.Fatalf("RTCP from %v", from)
		}
		pkts, err := rtcp.Unmarshal(d)
		if err != nil {
			t.Fatalf("the phone got no RTCP: %v", err)
		}
		for _, p := range pkts {
			if r, ok := p.(*rtcp.ReceiverReport); ok && len(r.Reports) == 1 && r.Reports[0].TotalLost == 3 && r.Reports[0].Jitter == 160 {
				found = true
			}
		}
	}
	waitFor(t, "the browser's report in the stats", func() bool { return br.a.Stats().Lost == 3 })

	// The phone's RTCP reaches the browser's sender.
	report, err := (&rtcp.ReceiverReport{SSRC: phoneSSRC, Reports: []rtcp.ReceptionReport{{SSRC: browserSSRC, TotalLost: 9}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	end = time.Now().Add(15 * time.Second)
	for got := false; !got; {
		if time.Now().After(end) {
			t.Fatal("no RTCP from the phone at the browser")
		}
		br.phoneRTCP.WriteToUDPAddrPort(report, rtcpAddr(br.b))
		select {
		case p := <-b.rtcp:
			if r, ok := p.(*rtcp.ReceiverReport); ok && len(r.Reports) == 1 && r.Reports[0].TotalLost == 9 && r.Reports[0].SSRC == browserSSRC {
				got = true
			}
		case <-time.After(20 * time.Millisecond):
		}
	}

	// A stranger's packet is dropped: the next packet at the phone is
	// the browser's.
	drain(br.phoneRTP)
	before := br.drops(t, "stranger")
	stranger := listen(t)
	stranger.WriteToUDPAddrPort(phonePacket(t, 0xdead, 1), br.a.Addr())
	waitFor(t, "the stranger count", func() bool { return br.drops(t, "stranger") == before+1 })
	if err := b.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 500, Timestamp: 80000}, Payload: payload(500)}); err != nil {
		t.Fatal(err)
	}
	if p := expectPlainRTP(t, br.phoneRTP, br.b.Addr()); p.SSRC != browserSSRC || p.SequenceNumber != 500 {
		t.Fatalf("the phone got %d of %x, want 500 of the browser's %x", p.SequenceNumber, p.SSRC, browserSSRC)
	}
}

// drain discards what waits on c.
func drain(c *net.UDPConn) {
	for {
		if _, ok := tryRecv(c); !ok {
			return
		}
	}
}
