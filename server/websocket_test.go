package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/sip/transport"
)

// wsWait bounds every wait for a message: a generous bound for a loaded
// machine, and far below the 32 s of a transaction timeout, so a message
// that only a timeout would produce fails the test.
const wsWait = 5 * time.Second

// wsMsg is one message a test phone received: its WebSocket message type
// (0 over UDP) and its bytes.
type wsMsg struct {
	typ  websocket.MessageType
	data []byte
}

// wsPhone is a SIP phone of the tests, over UDP or over a WebSocket as a
// browser's (RFC 7118 §5: Via WS with a .invalid sent-by, Contact
// .invalid;transport=ws). Its reader hands every message to in until the
// socket closes; the test drives the transactions itself.
type wsPhone struct {
	t        *testing.T
	user     string // user part of its AOR, in example.test
	proto    string // Via transport: UDP, WS or WSS
	sentBy   string
	contact  string // Contact URI
	write    func([]byte) error
	in       chan wsMsg
	gone     chan struct{} // closed when the reader stopped
	stop     chan struct{} // closed when the test ends
	readErr  error         // why it stopped, once gone is closed
	seen     map[string]bool
	ws       *websocket.Conn // nil over UDP
	cseq     int
	password string
}

// wsToken is a random name part, so that each phone's sent-by, Contact
// and branches are its own.
func wsToken() string { return strings.ToLower(rand.Text()[:10]) }

func newUDPPhone(t *testing.T, user string, srv netip.AddrPort) *wsPhone {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := newPhone(t, user, "UDP", c.LocalAddr().String(), "sip:"+user+"@"+c.LocalAddr().String())
	p.write = func(b []byte) error { _, err := c.WriteToUDPAddrPort(b, srv); return err }
	go func() {
		defer close(p.gone)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				p.readErr = err
				return
			}
			if !p.deliver(wsMsg{data: append([]byte(nil), buf[:n]...)}) {
				return
			}
		}
	}()
	return p
}

func newPhone(t *testing.T, user, proto, sentBy, contact string) *wsPhone {
	p := &wsPhone{t: t, user: user, proto: proto, sentBy: sentBy, contact: contact, password: "secret",
		in: make(chan wsMsg, 64), gone: make(chan struct{}), stop: make(chan struct{}), seen: map[string]bool{}}
	t.Cleanup(func() { close(p.stop) })
	return p
}

// deliver hands m to the test; false once the test is over, so that the
// reader never blocks on a full channel nobody reads.
func (p *wsPhone) deliver(m wsMsg) bool {
	select {
	case p.in <- m:
		return true
	case <-p.stop:
		return false
	}
}

// dialWS opens a WebSocket offering the sip subprotocol; url is
// ws://host:port or wss://host:port.
func dialWS(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	if opts.Subprotocols == nil {
		opts.Subprotocols = []string{"sip"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	return websocket.Dial(ctx, url, opts)
}

func newWSPhone(t *testing.T, user, url string, opts *websocket.DialOptions) *wsPhone {
	t.Helper()
	c, res, err := dialWS(t, url, opts)
	if err != nil {
		t.Fatalf("websocket handshake with %s: %v", url, err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || c.Subprotocol() != "sip" {
		t.Fatalf("handshake: %d, subprotocol %q; want 101 and sip (RFC 7118 §4)", res.StatusCode, c.Subprotocol())
	}
	t.Cleanup(func() { c.CloseNow() })
	proto := "WS"
	if strings.HasPrefix(url, "wss:") {
		proto = "WSS"
	}
	n := wsToken()
	p := newPhone(t, user, proto, "df7jal23ls0d"+n+".invalid", "sip:xyz"+n+"@abc"+n+".invalid;transport=ws")
	p.ws = c
	p.write = func(b []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), wsWait)
		defer cancel()
		return c.Write(ctx, websocket.MessageText, b)
	}
	go func() {
		defer close(p.gone)
		for {
			typ, data, err := c.Read(context.Background())
			if err != nil {
				p.readErr = err
				return
			}
			if !p.deliver(wsMsg{typ: typ, data: data}) {
				return
			}
		}
	}()
	return p
}

func (p *wsPhone) aor() string { return p.user + "@example.test" }

func (p *wsPhone) send(msg string) {
	p.t.Helper()
	if err := p.write([]byte(msg)); err != nil {
		p.t.Fatalf("%s: send: %v", p.user, err)
	}
}

// next returns the next message that is neither a provisional response
// nor a copy of one already seen (a retransmission over UDP).
func (p *wsPhone) next() (sip.Message, wsMsg) {
	p.t.Helper()
	timeout := time.After(wsWait)
	for {
		select {
		case m := <-p.in:
			if p.seen[string(m.data)] {
				continue
			}
			p.seen[string(m.data)] = true
			msg, err := sip.Parse(m.data)
			if err != nil {
				p.t.Fatalf("%s: received message does not parse: %v\n%s", p.user, err, m.data)
			}
			if res, ok := msg.(*sip.Response); ok && res.StatusCode < 200 {
				continue
			}
			if p.ws != nil && m.typ != websocket.MessageText {
				p.t.Errorf("%s: SIP message in a %v WebSocket message, want one text message (RFC 7118 §5)", p.user, m.typ)
			}
			return msg, m
		case <-p.gone:
			p.t.Fatalf("%s: connection gone while waiting: %v", p.user, p.readErr)
		case <-timeout:
			p.t.Fatalf("%s: nothing received within %s", p.user, wsWait)
		}
	}
}

func (p *wsPhone) response(method string) *sip.Response {
	p.t.Helper()
	msg, m := p.next()
	res, ok := msg.(*sip.Response)
	if !ok || res.CSeq.Method != method {
		p.t.Fatalf("%s: want a final response to %s, got:\n%s", p.user, method, m.data)
	}
	return res
}

func (p *wsPhone) request(method string) *sip.Request {
	p.t.Helper()
	msg, m := p.next()
	req, ok := msg.(*sip.Request)
	if !ok || req.Method != method {
		p.t.Fatalf("%s: want a %s, got:\n%s", p.user, method, m.data)
	}
	return req
}

// via is a new top Via of the phone's.
func (p *wsPhone) via() string {
	return "Via: SIP/2.0/" + p.proto + " " + p.sentBy + ";branch=z9hG4bK" + wsToken() + ";rport\r\n"
}

// answerChallenge returns the Authorization (401) or Proxy-Authorization
// (407) header line that answers res for method and ruri.
func (p *wsPhone) answerChallenge(res *sip.Response, method, ruri string) string {
	p.t.Helper()
	hdr, cred := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		hdr, cred = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch, err := digest.ParseChallenge(res.Get(hdr))
	if err != nil {
		p.t.Fatalf("%s: %d challenge: %v", p.user, res.StatusCode, err)
	}
	cr, err := ch.Authorize(digest.Answer{Method: method, URI: ruri, Username: p.user, Password: p.password, NC: 1, CNonce: "0a4f113b"})
	if err != nil {
		p.t.Fatal(err)
	}
	return cred + ": " + cr.String() + "\r\n"
}

// register binds the phone's Contact with digest authentication and
// returns the 200: the first REGISTER must get 401.
func (p *wsPhone) register(expires int) *sip.Response {
	p.t.Helper()
	callID := "reg-" + p.user + "-" + p.sentBy
	build := func(authz string) string {
		p.cseq++
		return "REGISTER sip:example.test SIP/2.0\r\n" + p.via() + "Max-Forwards: 70\r\n" +
			"From: <sip:" + p.aor() + ">;tag=r" + strconv.Itoa(p.cseq) + "\r\nTo: <sip:" + p.aor() + ">\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: " + strconv.Itoa(p.cseq) + " REGISTER\r\n" +
			"Contact: <" + p.contact + ">;expires=" + strconv.Itoa(expires) + "\r\n" + authz + "Content-Length: 0\r\n\r\n"
	}
	p.send(build(""))
	res := p.response("REGISTER")
	if res.StatusCode != 401 {
		p.t.Fatalf("%s: REGISTER without credentials: %d %s, want 401", p.user, res.StatusCode, res.Reason)
	}
	p.send(build(p.answerChallenge(res, "REGISTER", "sip:example.test")))
	res = p.response("REGISTER")
	if res.StatusCode != 200 {
		p.t.Fatalf("%s: REGISTER with credentials: %d %s, want 200", p.user, res.StatusCode, res.Reason)
	}
	return res
}

// wsDialog is one side's view of a call.
type wsDialog struct {
	callID           string
	localTag, remote string // From of our requests: local tag; To: remote address with tag
	localURI         string
	target           string   // remote Contact URI
	route            []string // route set, in the order to send
}

// inDialog writes a request within d (RFC 3261 §12.2.1.1, loose routes).
func (p *wsPhone) inDialog(d *wsDialog, method string, cseq int) string {
	route := ""
	if len(d.route) > 0 {
		route = "Route: " + strings.Join(d.route, ", ") + "\r\n"
	}
	return method + " " + d.target + " SIP/2.0\r\n" + p.via() + "Max-Forwards: 70\r\n" +
		"From: <" + d.localURI + ">;tag=" + d.localTag + "\r\nTo: " + d.remote + "\r\n" +
		"Call-ID: " + d.callID + "\r\nCSeq: " + strconv.Itoa(cseq) + " " + method + "\r\n" + route +
		"Content-Length: 0\r\n\r\n"
}

// answer writes a response to req with the headers a UAS copies
// (RFC 3261 §8.2.6.2, §12.1.1: Record-Route too), its To tag and Contact.
func (p *wsPhone) answer(req *sip.Request, code int, reason, toTag string, withContact bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range req.Via {
		b.WriteString("Via: " + v.String() + "\r\n")
	}
	for _, rr := range req.RecordRoute {
		b.WriteString("Record-Route: " + rr.String() + "\r\n")
	}
	to := req.To.String()
	if toTag != "" && req.To.Tag() == "" {
		to += ";tag=" + toTag
	}
	b.WriteString("From: " + req.From.String() + "\r\nTo: " + to + "\r\nCall-ID: " + req.CallID + "\r\n")
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", req.CSeq.Seq, req.CSeq.Method)
	if withContact {
		b.WriteString("Contact: <" + p.contact + ">\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// wsPort returns the port of srv's listener for proto.
func wsPort(t *testing.T, srv *Server, proto string) int {
	return int(srv.addr(t, proto, false).Port())
}

// checkRecordRoutes wants the double Record-Route of a call that crosses
// transports (RFC 5658): two URIs of ours, both r2=on, the top one the
// interface towards the message's receiver.
func checkRecordRoutes(t *testing.T, srv *Server, rr []sip.Address, top, bottom string) {
	t.Helper()
	if len(rr) != 2 {
		t.Fatalf("%d Record-Route headers, want 2 (RFC 5658 double record-routing): %v", len(rr), rr)
	}
	for i, proto := range []string{top, bottom} {
		u := rr[i].URI
		want := wsPort(t, srv, proto)
		if u.Host != "127.0.0.1" || u.Port != want {
			t.Errorf("Record-Route %d %s: want our %s listener 127.0.0.1:%d", i, u.String(), proto, want)
		}
		if r2, _ := u.Params.Get("r2"); !u.Params.Has("lr") || r2 != "on" {
			t.Errorf("Record-Route %d %s: want lr and r2=on", i, u.String())
		}
		wantTransport := ""
		if proto == "WS" || proto == "WSS" {
			wantTransport = "ws" // RFC 7118 §5.2: one value for both
		}
		if got, _ := u.Params.Get("transport"); !strings.EqualFold(got, wantTransport) {
			t.Errorf("Record-Route %d %s: transport %q, want %q", i, u.String(), got, wantTransport)
		}
	}
}

// wsCall runs a call from caller to callee through srv (wsEstablish),
// then a BYE from the caller or, with calleeHangs, from the callee.
func wsCall(t *testing.T, srv *Server, caller, callee *wsPhone, calleeHangs bool) {
	t.Helper()
	cd, ed := wsEstablish(t, srv, caller, callee)
	if calleeHangs {
		wsHangUp(t, callee, caller, ed, 1)
	} else {
		wsHangUp(t, caller, callee, cd, 3)
	}
}

// wsEstablish makes a call from caller to callee through srv: INVITE
// (answering the 407), 180, 200, ACK, each message checked for the
// server's Via and double Record-Route. It returns the caller's and the
// callee's dialogs.
func wsEstablish(t *testing.T, srv *Server, caller, callee *wsPhone) (cd, ed *wsDialog) {
	t.Helper()
	callID := "call-" + wsToken() + "@test"
	ruri := "sip:" + callee.aor()
	const sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	invite := func(cseq int, authz string) string {
		return "INVITE " + ruri + " SIP/2.0\r\n" + caller.via() + "Max-Forwards: 70\r\n" +
			"From: <sip:" + caller.aor() + ">;tag=c1\r\nTo: <" + ruri + ">\r\nCall-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " INVITE\r\nContact: <" + caller.contact + ">\r\n" + authz +
			"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
	}
	first := invite(1, "")
	caller.send(first)
	res := caller.response("INVITE")
	if res.StatusCode != 407 {
		t.Fatalf("INVITE without credentials: %d %s, want 407", res.StatusCode, res.Reason)
	}
	// The ACK of a non-2xx final response: the INVITE's branch and To tag.
	firstReq, _ := sip.ParseString(first)
	caller.send("ACK " + ruri + " SIP/2.0\r\nVia: " + firstReq.(*sip.Request).Via[0].String() + "\r\nMax-Forwards: 70\r\n" +
		"From: <sip:" + caller.aor() + ">;tag=c1\r\nTo: " + res.To.String() + "\r\nCall-ID: " + callID + "\r\n" +
		"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
	caller.send(invite(2, caller.answerChallenge(res, "INVITE", ruri)))

	inv := callee.request("INVITE")
	if inv.URI.String() != callee.contact {
		t.Errorf("INVITE Request-URI %s, want the callee's Contact %s", inv.URI.String(), callee.contact)
	}
	if v := inv.Via[0]; v.Transport != callee.proto || v.Host != "127.0.0.1" || v.Port != wsPort(t, srv, callee.proto) {
		t.Errorf("server's Via %s: want SIP/2.0/%s 127.0.0.1:%d (RFC 7118 §5)", v.String(), callee.proto, wsPort(t, srv, callee.proto))
	}
	if len(inv.Via) != 2 || inv.Via[1].Transport != caller.proto {
		t.Errorf("INVITE Vias %v: want the server's over the caller's %s", inv.Via, caller.proto)
	}
	if !bytes.Equal(inv.Body, []byte(sdp)) {
		t.Errorf("SDP changed with the relay off:\n%s", inv.Body)
	}
	checkRecordRoutes(t, srv, inv.RecordRoute, callee.proto, caller.proto)

	callee.send(callee.answer(inv, 180, "Ringing", "e1", true))
	callee.send(callee.answer(inv, 200, "OK", "e1", true))
	ok := caller.response("INVITE")
	if ok.StatusCode != 200 || ok.To.Tag() != "e1" {
		t.Fatalf("caller got %d (To tag %q), want the callee's 200", ok.StatusCode, ok.To.Tag())
	}
	if len(ok.Via) != 1 || ok.Via[0].Transport != caller.proto {
		t.Errorf("200 Vias %v: want the caller's alone", ok.Via)
	}
	if len(ok.Contact) != 1 || ok.Contact[0].URI.String() != callee.contact {
		t.Errorf("200 Contact %v, want %s", ok.Contact, callee.contact)
	}
	checkRecordRoutes(t, srv, ok.RecordRoute, callee.proto, caller.proto)

	// The caller's route set is the Record-Route reversed (RFC 3261 §12.1.2),
	// the callee's is as received (§12.1.1).
	cd = &wsDialog{callID: callID, localTag: "c1", localURI: "sip:" + caller.aor(), remote: ok.To.String(), target: callee.contact}
	for i := len(ok.RecordRoute) - 1; i >= 0; i-- {
		cd.route = append(cd.route, ok.RecordRoute[i].String())
	}
	ed = &wsDialog{callID: callID, localTag: "e1", localURI: ruri, remote: inv.From.String(), target: caller.contact}
	for _, rr := range inv.RecordRoute {
		ed.route = append(ed.route, rr.String())
	}

	caller.send(caller.inDialog(cd, "ACK", 2))
	ack := callee.request("ACK")
	if ack.URI.String() != callee.contact || ack.CallID != callID {
		t.Errorf("ACK to %s (Call-ID %s), want %s", ack.URI.String(), ack.CallID, callee.contact)
	}
	if v := ack.Via[0]; v.Transport != callee.proto {
		t.Errorf("ACK top Via %s: want the server's over %s", v.String(), callee.proto)
	}

	return cd, ed
}

// wsHangUp sends a BYE in d from hangs, which must reach hears at its
// Contact, and its 200 back.
func wsHangUp(t *testing.T, hangs, hears *wsPhone, d *wsDialog, seq int) {
	t.Helper()
	hangs.send(hangs.inDialog(d, "BYE", seq))
	bye := hears.request("BYE")
	if bye.URI.String() != hears.contact || bye.CallID != d.callID {
		t.Errorf("BYE to %s (Call-ID %s), want %s", bye.URI.String(), bye.CallID, hears.contact)
	}
	if v := bye.Via[0]; v.Transport != hears.proto {
		t.Errorf("BYE top Via %s: want the server's over %s", v.String(), hears.proto)
	}
	if len(bye.Route) != 0 {
		t.Errorf("BYE still carries Route %v: the server should have taken its own entries", bye.Route)
	}
	hears.send(hears.answer(bye, 200, "OK", "", false))
	if res := hangs.response("BYE"); res.StatusCode != 200 {
		t.Errorf("BYE: %d %s, want 200", res.StatusCode, res.Reason)
	}
}

// wsServer starts a server for example.test with the given listeners
// (udp is always added), alice and bob as subscribers, the relay off.
func wsServer(t *testing.T, cfg Config, listen ...string) *Server {
	t.Helper()
	cfg.Listen = append([]string{"udp:127.0.0.1:0"}, listen...)
	cfg.Domains = []string{"example.test"}
	cfg.Media.Relay = proxy.MediaNever
	srv := newTestServer(t, cfg)
	for _, u := range []string{"alice", "bob"} {
		if err := srv.store.AddUser(context.Background(), auth.NewUser(u, "example.test", "secret")); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}

// waitUnbound waits until aor has no binding left.
func waitUnbound(t *testing.T, srv *Server, aor string) {
	t.Helper()
	deadline := time.Now().Add(wsWait)
	for len(srv.registrar.Lookup(aor)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still bound after its WebSocket closed: %+v", aor, srv.registrar.Lookup(aor))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWebSocketCalls: RFC 7118 between a browser on a WebSocket and a
// phone on UDP, both ways, hung up from either end; then the browser's
// connection closes, its binding goes and a call to it gets 480.
func TestWebSocketCalls(t *testing.T) {
	srv := wsServer(t, Config{}, "ws:127.0.0.1:0")
	udpAddr := srv.addr(t, "UDP", false)
	url := "ws://" + srv.addr(t, "WS", false).String()

	alice := newWSPhone(t, "alice", url, nil)
	res := alice.register(600)
	if len(res.Contact) != 1 || res.Contact[0].URI.String() != alice.contact {
		t.Fatalf("REGISTER 200 Contact %v, want %s", res.Contact, alice.contact)
	}
	bs := srv.registrar.Lookup("alice@example.test")
	if len(bs) != 1 || bs[0].Transport != "WS" || bs[0].Conn == nil {
		t.Fatalf("alice's bindings %+v: want one over her WS connection", bs)
	}
	bob := newUDPPhone(t, "bob", udpAddr)
	bob.register(600)

	t.Run("UDP to WS, caller hangs up", func(t *testing.T) { wsCall(t, srv, bob, alice, false) })
	t.Run("UDP to WS, callee hangs up", func(t *testing.T) { wsCall(t, srv, bob, alice, true) })
	t.Run("WS to UDP, caller hangs up", func(t *testing.T) { wsCall(t, srv, alice, bob, false) })
	t.Run("WS to UDP, callee hangs up", func(t *testing.T) { wsCall(t, srv, alice, bob, true) })

	// RFC 7118 §5: nothing reaches alice once her connection is gone,
	// neither within a dialog nor a new call.
	cd, _ := wsEstablish(t, srv, bob, alice)
	if err := alice.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitUnbound(t, srv, "alice@example.test")
	bob.send(bob.inDialog(cd, "BYE", 3))
	if res := bob.response("BYE"); res.StatusCode != 480 {
		t.Errorf("BYE to alice after her WebSocket closed: %d %s, want 480", res.StatusCode, res.Reason)
	}
	callID := "gone-" + wsToken() + "@test"
	invite := func(cseq int, authz string) string {
		return "INVITE sip:alice@example.test SIP/2.0\r\n" + bob.via() + "Max-Forwards: 70\r\n" +
			"From: <sip:bob@example.test>;tag=g1\r\nTo: <sip:alice@example.test>\r\nCall-ID: " + callID + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " INVITE\r\nContact: <" + bob.contact + ">\r\n" + authz + "Content-Length: 0\r\n\r\n"
	}
	bob.send(invite(1, ""))
	ch := bob.response("INVITE")
	if ch.StatusCode != 407 {
		t.Fatalf("INVITE: %d, want 407", ch.StatusCode)
	}
	bob.send(invite(2, bob.answerChallenge(ch, "INVITE", "sip:alice@example.test")))
	// Within wsWait: a timeout would be a 408 after 32 s.
	if res := bob.response("INVITE"); res.StatusCode != 480 {
		t.Fatalf("INVITE to alice after her WebSocket closed: %d %s, want 480", res.StatusCode, res.Reason)
	}
}

// TestWebSocketSecure: the same over wss, with the server's test
// certificate; the browser's binding keeps the WSS transport.
func TestWebSocketSecure(t *testing.T) {
	cert, key := writeCert(t, t.TempDir())
	srv := wsServer(t, Config{TLSCert: cert, TLSKey: key}, "wss:127.0.0.1:0")
	url := "wss://" + srv.addr(t, "WSS", false).String()
	// An untrusted certificate fails the handshake.
	if c, _, err := dialWS(t, url, nil); err == nil {
		c.CloseNow()
		t.Fatal("wss handshake succeeded without trusting the test certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	alice := newWSPhone(t, "alice", url, &websocket.DialOptions{HTTPClient: client})
	alice.register(600)
	bs := srv.registrar.Lookup("alice@example.test")
	if len(bs) != 1 || bs[0].Transport != "WSS" || bs[0].Conn == nil {
		t.Fatalf("alice's bindings %+v: want one over her WSS connection", bs)
	}
	if st, ok := bs[0].Conn.TLSConnectionState(); !ok || st.Version < tls.VersionTLS12 {
		t.Errorf("binding's connection TLS state %v, %v: want a completed handshake", st.Version, ok)
	}
	bob := newUDPPhone(t, "bob", srv.addr(t, "UDP", false))
	bob.register(600)
	wsCall(t, srv, bob, alice, true)
	wsCall(t, srv, alice, bob, false)
	alice.ws.CloseNow()
	waitUnbound(t, srv, "alice@example.test")
}

// TestWebSocketHandshake: what the listener refuses, through the server's
// configuration: no sip subprotocol (400, RFC 7118 §4), an origin not in
// websocket.allowed_origins (403).
func TestWebSocketHandshake(t *testing.T) {
	srv := wsServer(t, Config{WebSocket: transport.WebSocketConfig{AllowedOrigins: []string{"https://phone.example.test"}}}, "ws:127.0.0.1:0")
	url := "ws://" + srv.addr(t, "WS", false).String()
	origin := func(o string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {o}}}
	}
	for _, tt := range []struct {
		name string
		opts *websocket.DialOptions
		want int
	}{
		{"allowed origin", origin("https://phone.example.test"), 101},
		{"no Origin (not a browser)", nil, 101},
		{"origin not allowed", origin("https://evil.test"), 403},
		{"allowed host, other scheme", origin("http://phone.example.test"), 403},
		{"no sip subprotocol", &websocket.DialOptions{Subprotocols: []string{"chat"}, HTTPHeader: http.Header{"Origin": {"https://phone.example.test"}}}, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, res, err := dialWS(t, url, tt.opts)
			if c != nil {
				defer c.CloseNow()
			}
			if res == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			if res.StatusCode != tt.want {
				t.Fatalf("handshake: %d (%v), want %d", res.StatusCode, err, tt.want)
			}
			if tt.want == 101 && c.Subprotocol() != "sip" {
				t.Fatalf("subprotocol %q, want sip", c.Subprotocol())
			}
		})
	}
	// The refusals left the listener serving.
	p := newWSPhone(t, "alice", url, origin("https://phone.example.test"))
	p.register(600)
}

// TestWebSocketMessageSize: a message over max_message_size closes the
// connection with 1009 (RFC 6455 §7.4.1) before the server reads it
// whole; one within it is served.
func TestWebSocketMessageSize(t *testing.T) {
	srv := wsServer(t, Config{MaxMessageSize: 4096}, "ws:127.0.0.1:0")
	url := "ws://" + srv.addr(t, "WS", false).String()
	c, _, err := dialWS(t, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	pad := "X-Pad: " + strings.Repeat("a", 8192) + "\r\n"
	msg := request("OPTIONS", "sip:example.test", "big.invalid", pad)
	msg = strings.Replace(msg, "SIP/2.0/UDP", "SIP/2.0/WS", 1)
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, data, err := c.Read(ctx)
	if err == nil {
		t.Fatalf("got a message back instead of a close:\n%s", data)
	}
	if st := websocket.CloseStatus(err); st != websocket.StatusMessageTooBig {
		t.Fatalf("read: %v (close status %d), want close 1009", err, st)
	}
	// The next connection is served.
	p := newWSPhone(t, "alice", url, nil)
	p.register(600)
}

// TestWebSocketPingTimeout: a browser that stops answering the server's
// pings (websocket.ping_interval, ping_timeout) is closed, and its
// binding goes with the connection; one that answers stays.
func TestWebSocketPingTimeout(t *testing.T) {
	srv := wsServer(t, Config{
		Auth: auth.Config{OpenDomains: []string{"example.test"}},
		// Frequent pings, each with a pong budget no loaded machine
		// misses for a client that reads.
		WebSocket: transport.WebSocketConfig{PingInterval: 50 * time.Millisecond, PingTimeout: time.Second},
	}, "ws:127.0.0.1:0")
	url := "ws://" + srv.addr(t, "WS", false).String()
	// bob's phone reads all along, so the library answers each ping.
	bob := newWSPhone(t, "bob", url, nil)
	bob.send("REGISTER sip:example.test SIP/2.0\r\n" + bob.via() + "Max-Forwards: 70\r\nFrom: <sip:bob@example.test>;tag=r\r\n" +
		"To: <sip:bob@example.test>\r\nCall-ID: reg-bob\r\nCSeq: 1 REGISTER\r\nContact: <" + bob.contact + ">\r\nContent-Length: 0\r\n\r\n")
	if res := bob.response("REGISTER"); res.StatusCode != 200 {
		t.Fatalf("bob's REGISTER: %d", res.StatusCode)
	}
	// alice reads her 200, then nothing: no reader, no pong.
	c, _, err := dialWS(t, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	reg := "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/WS quiet.invalid;branch=z9hG4bKquiet\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=r\r\nTo: <sip:alice@example.test>\r\nCall-ID: reg-quiet\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:q@quiet.invalid;transport=ws>\r\nContent-Length: 0\r\n\r\n"
	if err := c.Write(ctx, websocket.MessageText, []byte(reg)); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || !bytes.HasPrefix(data, []byte("SIP/2.0 200")) {
		t.Fatalf("alice's REGISTER: %q, %v", data, err)
	}
	waitUnbound(t, srv, "alice@example.test")
	if n := len(srv.registrar.Lookup("bob@example.test")); n != 1 {
		t.Errorf("bob, who answers pings, has %d bindings, want 1", n)
	}
	select {
	case <-bob.gone:
		t.Errorf("bob's connection closed: %v", bob.readErr)
	default:
	}
}

// TestWebSocketFrames: RFC 7118 §5 allows a SIP message in a binary
// message too; a CRLFCRLF keep-alive gets CRLF (RFC 5626 §3.5.1, as SIP.js
// sends it).
func TestWebSocketFrames(t *testing.T) {
	srv := wsServer(t, Config{}, "ws:127.0.0.1:0")
	c, _, err := dialWS(t, "ws://"+srv.addr(t, "WS", false).String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), wsWait)
	defer cancel()
	opts := strings.Replace(request("OPTIONS", "sip:example.test", "bin.invalid", ""), "SIP/2.0/UDP", "SIP/2.0/WS", 1)
	if err := c.Write(ctx, websocket.MessageBinary, []byte(opts)); err != nil {
		t.Fatal(err)
	}
	typ, data, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText || !bytes.HasPrefix(data, []byte("SIP/2.0 200")) {
		t.Fatalf("OPTIONS in a binary message: %v %q, %v; want a 200 in a text message", typ, data, err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || string(data) != "\r\n" {
		t.Fatalf("keep-alive: %q, %v; want CRLF", data, err)
	}
}

// TestWebSocketCloseBindings: closing a connection removes every binding
// made over it (several contacts, several users) and only those: a
// browser that reconnected and registered its Contact again over a new
// connection keeps it when the old connection goes.
func TestWebSocketCloseBindings(t *testing.T) {
	srv := wsServer(t, Config{}, "ws:127.0.0.1:0")
	url := "ws://" + srv.addr(t, "WS", false).String()
	bound := func(aor string) []string {
		var cs []string
		for _, b := range srv.registrar.Lookup(aor) {
			cs = append(cs, b.Contact.URI.String())
		}
		return cs
	}

	// One connection, two users, two contacts for alice.
	p := newWSPhone(t, "alice", url, nil)
	first := p.contact
	p.register(600)
	p.contact = strings.Replace(first, "xyz", "second", 1)
	p.register(600)
	p.user, p.contact = "bob", strings.Replace(first, "xyz", "bob", 1)
	p.register(600)
	if a, b := bound("alice@example.test"), bound("bob@example.test"); len(a) != 2 || len(b) != 1 {
		t.Fatalf("bound before the close: alice %v, bob %v", a, b)
	}
	p.ws.CloseNow()
	waitUnbound(t, srv, "alice@example.test")
	waitUnbound(t, srv, "bob@example.test")

	// The same Contact registered again over a second connection.
	old := newWSPhone(t, "alice", url, nil)
	old.register(600)
	oldConn := srv.registrar.Lookup("alice@example.test")[0].Conn
	// Called after the server's own OnClose (added at the REGISTER),
	// on the same goroutine: once it has run, the server has handled
	// the close.
	handled := make(chan struct{})
	oldConn.OnClose(func() { close(handled) })
	fresh := newWSPhone(t, "alice", url, nil)
	fresh.contact = old.contact
	fresh.register(600)
	bs := srv.registrar.Lookup("alice@example.test")
	if len(bs) != 1 || bs[0].Contact.URI.String() != old.contact || bs[0].Conn == nil {
		t.Fatalf("after the second REGISTER: %+v, want the one binding", bs)
	}
	freshConn := bs[0].Conn
	if freshConn == oldConn {
		t.Fatal("the binding kept the old connection")
	}
	if err := old.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(wsWait):
		t.Fatal("the server did not handle the close")
	}
	if bs := srv.registrar.Lookup("alice@example.test"); len(bs) != 1 || bs[0].Conn != freshConn {
		t.Fatalf("bindings %+v, want the one over the new connection", bs)
	}
	fresh.ws.CloseNow()
	waitUnbound(t, srv, "alice@example.test")
}
