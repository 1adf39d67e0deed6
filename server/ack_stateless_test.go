package server

import (
	"hash/maphash"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
)

// The ACK to a final response the server sent without a transaction (a
// 407 challenge, a 483) is hop-by-hop: it ends at the server (RFC 3261
// §17.1.1.3, §16.11). Forwarded, it reached the callee before the INVITE
// sent again with credentials, and a callee such as sipp took it for the
// start of the call. The ACK of a 2xx (another To tag) is still forwarded.
func TestACKOfStatelessResponseIsAbsorbed(t *testing.T) {
	bob, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	srv := startServer(t, Config{
		Domains: []string{"example.test"},
		Auth:    auth.Config{OpenDomains: []string{"*"}},
		Routing: proxy.Config{Locations: map[string][]string{
			"bob@example.test": {"sip:bob@" + bob.LocalAddr().String()},
		}},
	})
	to := srv.addr(t, "UDP", false)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(msg string) {
		t.Helper()
		if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}
	atBob := func() string {
		buf := make([]byte, 65536)
		_ = bob.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := bob.ReadFrom(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	// Max-Forwards 0: 483, statelessly.
	invite := request("INVITE", "sip:bob@example.test", c.LocalAddr().String(), "")
	invite = strings.Replace(invite, "Max-Forwards: 70", "Max-Forwards: 0", 1)
	send(invite)
	res := readResponse(t, c, 2*time.Second)
	if res == nil || res.StatusCode != 483 || res.To.Tag() == "" {
		t.Fatalf("INVITE with Max-Forwards 0: %v, want 483 with a To tag", res)
	}
	// The ACK: the INVITE's Via, From and Call-ID, the 483's To tag, and
	// a fresh Max-Forwards, as a UA's transaction sends it.
	ack := strings.Replace(invite, "INVITE sip:", "ACK sip:", 1)
	ack = strings.Replace(ack, "CSeq: 1 INVITE", "CSeq: 1 ACK", 1)
	ack = strings.Replace(ack, "Max-Forwards: 0", "Max-Forwards: 70", 1)
	ack = strings.Replace(ack, "To: <sip:bob@example.test>", "To: <sip:bob@example.test>;tag="+res.To.Tag(), 1)
	send(ack)
	if m := atBob(); m != "" {
		t.Fatalf("the ACK of the stateless 483 was forwarded:\n%s", m)
	}
	// An ACK with some other To tag (a 2xx's, end to end) goes on.
	other := strings.Replace(ack, ";tag="+res.To.Tag(), ";tag=bobs-tag", 1)
	send(other)
	m := atBob()
	if !strings.HasPrefix(m, "ACK sip:bob@") {
		t.Fatalf("the ACK of a 2xx was not forwarded: %q", m)
	}
	if _, err := sip.Parse([]byte(m)); err != nil {
		t.Fatal(err)
	}
}

// statelessHash gives a request's retransmissions the same tag and other
// requests, or another server, a different one; the ACK of the stateless
// answer is recognised by it without allocating.
func TestStatelessHash(t *testing.T) {
	s := &Server{seed: maphash.MakeSeed()}
	parse := func(branch string) *sip.Request {
		m, err := sip.ParseString("ACK sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=" + branch + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=f1\r\nTo: <sip:bob@example.test>\r\n" +
			"Call-ID: c1@host\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Request)
	}
	req := parse("z9hG4bKx")
	if s.statelessHash(req) != s.statelessHash(parse("z9hG4bKx")) {
		t.Error("a retransmission hashes differently")
	}
	if s.statelessHash(req) == s.statelessHash(parse("z9hG4bKy")) {
		t.Error("another branch hashes the same")
	}
	if other := (&Server{seed: maphash.MakeSeed()}); other.statelessHash(req) == s.statelessHash(req) {
		t.Error("another server's seed gives the same hash")
	}
	req.To.Params = req.To.Params.Set("tag", s.statelessTag(req))
	if !s.ackOfStateless(req) {
		t.Error("the ACK of our stateless answer not recognised")
	}
	if allocs := testing.AllocsPerRun(100, func() { s.ackOfStateless(req) }); allocs != 0 {
		t.Errorf("ackOfStateless allocates %v times", allocs)
	}
}
