//go:build linux

package webrtc

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/stun/v4"
	"go.uber.org/goleak"
)

const phoneSSRC = 0x5eed1e55

// connect brings a stub browser up with the endpoint: ICE check, DTLS in
// the stub's role, keys on both sides.
func connect(t *testing.T, br *bridge, st *stub, stubIsClient bool) {
	t.Helper()
	setup, want := "active", "passive"
	if !stubIsClient {
		setup, want = "passive", "active"
	}
	if got := br.e.LocalSetup(); got != "actpass" {
		t.Errorf("a=setup:%s before the browser's, want actpass", got)
	}
	if err := br.e.SetRemote(st.params(), setup); err != nil {
		t.Fatal(err)
	}
	if got := br.e.LocalSetup(); got != want {
		t.Errorf("a=setup:%s after the browser's %s, want %s", got, setup, want)
	}
	if m := st.check(br.e.Local().Pwd, true); m.Type != stun.BindingSuccess {
		t.Fatalf("check answered %v", m.Type)
	}
	if err := st.handshake(stubIsClient); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	waitFor(t, "the endpoint's keys", br.e.Ready)
}

// RFC 5763 §5 both ways round: the browser active (the relay is DTLS
// server) or passive (the relay is client). Media is SRTP on the
// browser's side and plain on the phone's, both ways, RTCP muxed.
func TestDTLSSRTPRoles(t *testing.T) {
	for _, tt := range []struct {
		name         string
		stubIsClient bool
	}{
		{"browser active, relay DTLS server", true},
		{"browser passive, relay DTLS client", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			br := newBridge(t, Config{})
			st := newStub(t, br)
			connect(t, br, st, tt.stubIsClient)
			if sel, nom := br.a.Selected(); sel != st.sock.addr() || !nom {
				t.Errorf("ICE selected %v (nominated %v), want %v", sel, nom, st.sock.addr())
			}

			// Browser to phone: SRTP in, plain RTP out of the partner leg.
			st.sendSRTP(phonePacket(t, 0xb0b, 1), false)
			if p := expectPlainRTP(t, br.phoneRTP, br.b.Addr()); p.SequenceNumber != 1 || p.SSRC != 0xb0b {
				t.Errorf("got packet %d of %x", p.SequenceNumber, p.SSRC)
			}
			// Phone to browser: plain in, SRTP out of the browser's leg.
			br.phoneRTP.WriteToUDPAddrPort(phonePacket(t, phoneSSRC, 2), br.b.Addr())
			if got := st.recvSRTP(false); !bytes.Equal(got, phonePacket(t, phoneSSRC, 2)) {
				t.Errorf("browser decrypted %x", got)
			}
			// SRTCP muxed on the browser's side, RTCP on port+1 on the
			// phone's (RFC 5761 §5.1.3).
			rr, _ := (&rtcp.ReceiverReport{SSRC: 0xb0b, Reports: []rtcp.ReceptionReport{{SSRC: phoneSSRC, TotalLost: 4, Jitter: 80}}}).Marshal()
			st.sendSRTP(rr, true)
			if got, from := recv(t, br.phoneRTCP); !bytes.Equal(got, rr) || from != rtcpAddr(br.b) {
				t.Errorf("phone's RTCP %x from %v", got, from)
			}
			waitFor(t, "the browser's report in the stats", func() bool { return br.a.Stats().Lost == 4 })
			sr, _ := (&rtcp.SenderReport{SSRC: phoneSSRC, NTPTime: 1 << 40, RTPTime: 320, PacketCount: 2, OctetCount: 320}).Marshal()
			br.phoneRTCP.WriteToUDPAddrPort(sr, rtcpAddr(br.b))
			if got := st.recvSRTP(true); !bytes.Equal(got, sr) {
				t.Errorf("browser's SRTCP decrypted to %x", got)
			}
		})
	}
}

// ICE instead of latching: even a genuine SRTP packet is dropped when it
// comes from a source that passed no check (a stranger replaying it, RTP
// bleed), as is a check signed with the wrong password.
func TestStrangers(t *testing.T) {
	br := newBridge(t, Config{})
	st := newStub(t, br)
	if err := br.e.SetRemote(st.params(), "active"); err != nil {
		t.Fatal(err)
	}

	// RFC 8489 §9.1.3: wrong password, 401, counted, nothing validated.
	m := st.check("wrong-password-wrong-password", true)
	var ec stun.ErrorCodeAttribute
	if m.Type != stun.BindingError || ec.GetFrom(m) != nil || ec.Code != stun.CodeUnauthorized {
		t.Fatalf("wrong password answered %v %v", m.Type, ec)
	}
	waitFor(t, "the count", func() bool { return br.drops(t, "stun_refused") == 1 })
	if sel, _ := br.a.Selected(); sel.IsValid() {
		t.Fatalf("selected %v after a refused check", sel)
	}
	// Before a good check its DTLS is a stranger's too.
	st.sock.send(t, br.a.Addr(), []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	waitFor(t, "the stranger count", func() bool { return br.drops(t, "stranger") == 1 })
	if br.e.Ready() || len(br.e.dtlsIn) != 0 {
		t.Fatal("a stranger's DTLS reached the endpoint")
	}

	if m := st.check(br.e.Local().Pwd, true); m.Type != stun.BindingSuccess {
		t.Fatalf("good check answered %v", m.Type)
	}
	if err := st.handshake(true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the keys", br.e.Ready)

	// A stranger replays a packet the browser protected; the browser
	// then sends the next one. The phone's first packet must be the
	// browser's.
	stranger := listen(t)
	buf := append(make([]byte, 0, 2048), phonePacket(t, 0xb0b, 10)...)
	n, err := st.keys.protect(buf, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.WriteToUDPAddrPort(buf[:n], br.a.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stranger count", func() bool { return br.drops(t, "stranger") == 2 })
	st.sendSRTP(phonePacket(t, 0xb0b, 11), false)
	if p := expectPlainRTP(t, br.phoneRTP, br.b.Addr()); p.SequenceNumber != 11 {
		t.Fatalf("the phone got packet %d first, want 11", p.SequenceNumber)
	}
	// Counted after the send, so the receipt can come first.
	waitFor(t, "one packet forwarded from the browser", func() bool { return br.a.Stats().Packets == 1 })
}

// RFC 8122 §5: a certificate that is not the one signalled fails the
// handshake; no keys, no media.
func TestWrongFingerprintRefused(t *testing.T) {
	br := newBridge(t, Config{})
	st := newStub(t, br)
	p := st.params()
	p.Fingerprint = newIdentity(t).Fingerprint() // someone else's
	if err := br.e.SetRemote(p, "active"); err != nil {
		t.Fatal(err)
	}
	if m := st.check(br.e.Local().Pwd, true); m.Type != stun.BindingSuccess {
		t.Fatalf("check answered %v", m.Type)
	}
	if err := st.handshake(true); err == nil {
		t.Fatal("handshake with the wrong certificate succeeded")
	}
	waitFor(t, "the endpoint's verdict", func() bool { return br.e.Err() != nil })
	if err := br.e.Err(); !errors.Is(err, errWrongCertificate) {
		t.Errorf("Err() = %v, want the fingerprint mismatch", err)
	}
	if br.e.Ready() {
		t.Error("keys derived with the wrong certificate")
	}
	// The phone's media goes nowhere.
	before := br.drops(t, "not_ready")
	br.phoneRTP.WriteToUDPAddrPort(phonePacket(t, phoneSSRC, 1), br.b.Addr())
	waitFor(t, "the not_ready count", func() bool { return br.drops(t, "not_ready") == before+1 })
}

// The handshake is bounded from its first record.
func TestHandshakeTimeout(t *testing.T) {
	br := newBridge(t, Config{HandshakeTimeout: 100 * time.Millisecond})
	st := newStub(t, br)
	if err := br.e.SetRemote(st.params(), "active"); err != nil {
		t.Fatal(err)
	}
	st.check(br.e.Local().Pwd, true)
	// A record that is no handshake starts the server's clock.
	st.sock.send(t, br.a.Addr(), []byte{23, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	waitFor(t, "the handshake to give up", func() bool { return br.e.Err() != nil })
	if ne := net.Error(nil); !errors.As(br.e.Err(), &ne) || !ne.Timeout() {
		t.Errorf("Err() = %v, want a timeout", br.e.Err())
	}
	if br.e.Ready() {
		t.Error("ready without a handshake")
	}
}

// SetRemote: the same values again are a re-INVITE and change nothing;
// new credentials restart ICE (new local credentials, new checks); a new
// fingerprint restarts DTLS.
func TestSetRemote(t *testing.T) {
	br := newBridge(t, Config{})
	st := newStub(t, br)
	connect(t, br, st, true)
	sess, local := br.e.sess.Load(), br.e.Local()

	if err := br.e.SetRemote(st.params(), "actpass"); err != nil { // same role as active
		t.Fatal(err)
	}
	if br.e.sess.Load() != sess || br.e.Local() != local || !br.e.Ready() {
		t.Fatal("the same values again changed the session")
	}

	// ICE restart (RFC 8445 §9): keys stay, the checks start over.
	p := st.params()
	p.Ufrag, p.Pwd = "newUfrag", "newPasswordNewPasswordNew"
	if err := br.e.SetRemote(p, "active"); err != nil {
		t.Fatal(err)
	}
	nl := br.e.Local()
	if nl.Ufrag == local.Ufrag || nl.Pwd == local.Pwd || nl.Fingerprint != local.Fingerprint {
		t.Errorf("local params after an ICE restart: %+v (were %+v)", nl, local)
	}
	if sel, _ := br.a.Selected(); sel.IsValid() {
		t.Errorf("selected %v after an ICE restart", sel)
	}
	if !br.e.Ready() {
		t.Error("an ICE restart dropped the keys")
	}
	st.ufrag, st.pwd, st.local = p.Ufrag, p.Pwd, nl
	if m := st.check(local.Pwd, true); m.Type != stun.BindingError {
		t.Errorf("a check with the old password answered %v", m.Type)
	}
	if m := st.check(nl.Pwd, true); m.Type != stun.BindingSuccess {
		t.Errorf("a check with the new password answered %v", m.Type)
	}

	// DTLS restart.
	p.Fingerprint = newIdentity(t).Fingerprint()
	if err := br.e.SetRemote(p, "active"); err != nil {
		t.Fatal(err)
	}
	if br.e.sess.Load() == sess || br.e.Ready() {
		t.Error("a new fingerprint kept the old session")
	}

	for _, tt := range []struct {
		name  string
		p     Params
		setup string
	}{
		{"a=setup:holdconn", p, "holdconn"},
		{"no fingerprint", Params{Ufrag: "u", Pwd: "p"}, "active"},
		{"no ufrag", Params{Pwd: "p", Fingerprint: p.Fingerprint}, "active"},
	} {
		if err := br.e.SetRemote(tt.p, tt.setup); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	br.e.Close()
	if err := br.e.SetRemote(p, "active"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	if err := br.e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestAttachErrors(t *testing.T) {
	p, _ := newPlane(t)
	l, err := p.Allocate(lo4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Attach(l, Config{}); err == nil {
		t.Error("no identity accepted")
	}
	if _, err := Attach(l, Config{Identity: newIdentity(t), HandshakeTimeout: -1}); err == nil {
		t.Error("negative timeout accepted")
	}
	l.Close()
	if _, err := Attach(l, Config{Identity: newIdentity(t)}); !errors.Is(err, ErrClosed) {
		t.Errorf("closed leg: %v", err)
	}
}

// Close, and closing the leg or the plane, end every goroutine the
// endpoint started: while it waits for the browser, and with DTLS up.
// The browser's side closes only afterwards, and nothing it sends then
// reaches the endpoint, so only the close can have ended them.
func TestCloseEndsGoroutines(t *testing.T) {
	for _, tt := range []struct {
		name    string
		connect bool
		close   func(br *bridge)
	}{
		{"Close while waiting for DTLS", false, func(br *bridge) { br.e.Close() }},
		{"Close with DTLS up", true, func(br *bridge) { br.e.Close() }},
		{"leg closed with DTLS up", true, func(br *bridge) { br.a.Close() }},
		{"plane closed with DTLS up", true, func(br *bridge) { br.p.Close() }},
	} {
		within := func(t *testing.T, what string, f func()) {
			t.Helper()
			done := make(chan struct{})
			go func() { f(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second): // only ends a failing test
				t.Fatalf("%s did not return", what)
			}
		}
		t.Run(tt.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			br := newBridge(t, Config{})
			st := newStub(t, br)
			if tt.connect {
				connect(t, br, st, true)
			} else if err := br.e.SetRemote(st.params(), "active"); err != nil {
				t.Fatal(err)
			}
			within(t, tt.name, func() { tt.close(br) })
			if st.conn != nil {
				st.conn.Close()
			}
			st.sock.shut()
			goleak.VerifyNone(t, ignore,
				// The plane's readers live until the test's cleanup.
				goleak.IgnoreAnyFunction("github.com/hlas-voip/hlas/media/plane.(*reader).run"))
			within(t, "Close", func() { br.e.Close() })
		})
	}
}

// A re-offer with actpass keeps the DTLS roles and the session it has
// (RFC 8842 §5.5): the relay that was the client stays the client, with
// its keys.
func TestReofferActpassKeepsRole(t *testing.T) {
	br := newBridge(t, Config{})
	st := newStub(t, br)
	connect(t, br, st, false) // the browser said passive: the relay is the client
	if err := br.e.SetRemote(st.params(), "actpass"); err != nil {
		t.Fatal(err)
	}
	if got := br.e.LocalSetup(); got != "active" {
		t.Errorf("a=setup:%s after a re-offer with actpass, want active (unchanged)", got)
	}
	if !br.e.Ready() {
		t.Error("the keys were dropped: the re-offer restarted DTLS")
	}
}
