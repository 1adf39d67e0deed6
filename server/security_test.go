package server

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/security"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/store"
)

// untrusted is a security section that trusts nobody, so loopback
// clients (127.0.0.2, 127.0.0.3, ...) meet the defences; Linux answers on
// the whole of 127.0.0.0/8.
func untrusted() security.Config { return security.Config{Trusted: []string{}} }

// fromAddr sends msg from a socket bound to ip and returns the response,
// or nil when none comes within wait.
func fromAddr(t *testing.T, ip string, to netip.AddrPort, msg string, wait time.Duration) *sip.Response {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, c, wait)
}

// answeredWithin resends msg from ip until it is answered (true) or d
// passes (false): bans lifted through the store take effect within the
// server's poll (1 s).
func answeredWithin(t *testing.T, ip string, to netip.AddrPort, msg func() string, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if fromAddr(t, ip, to, msg(), 200*time.Millisecond) != nil {
			return true
		}
	}
	return false
}

func options(ua string) func() string {
	return func() string {
		extra := ""
		if ua != "" {
			extra = "User-Agent: " + ua + "\r\n"
		}
		return request("OPTIONS", "sip:127.0.0.1", "127.0.0.9:5060", extra)
	}
}

func storedBans(t *testing.T, s *Server) []store.Ban {
	t.Helper()
	bans, err := s.store.Bans(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return bans
}

func TestScannerUserAgentIsBannedAndUnbanned(t *testing.T) {
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Security: untrusted()})
	to := srv.addr(t, "UDP", false)
	if res := fromAddr(t, "127.0.0.2", to, options("friendly-scanner")(), 300*time.Millisecond); res != nil {
		t.Fatalf("the scanner got an answer: %d", res.StatusCode)
	}
	// Banned: even a request that looks legitimate gets no answer now.
	if res := fromAddr(t, "127.0.0.2", to, options("Linphone/5.2")(), 300*time.Millisecond); res != nil {
		t.Fatalf("a banned source got %d", res.StatusCode)
	}
	// Another address is served throughout.
	if res := fromAddr(t, "127.0.0.3", to, options("Linphone/5.2")(), 2*time.Second); res == nil || res.StatusCode != 200 {
		t.Fatalf("a legitimate client got %v", res)
	}
	if n := testutil.ToFloat64(srv.edge.bansTotal.WithLabelValues("scanner")); n != 1 {
		t.Fatalf("hlas_security_bans_total{kind=scanner} = %v", n)
	}
	// The ban reaches the store (hlas ban list) ...
	deadline := time.Now().Add(5 * time.Second)
	var bans []store.Ban
	for bans = storedBans(t, srv); len(bans) == 0 && time.Now().Before(deadline); bans = storedBans(t, srv) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(bans) != 1 || bans[0].Prefix != netip.MustParsePrefix("127.0.0.2/32") || !strings.Contains(bans[0].Reason, "friendly-scanner") || bans[0].Manual {
		t.Fatalf("stored bans %+v", bans)
	}
	// ... and an operator's delete there (hlas ban del) lifts it.
	if err := srv.store.DeleteBan(context.Background(), bans[0].Prefix); err != nil {
		t.Fatal(err)
	}
	if !answeredWithin(t, "127.0.0.2", to, options("Linphone/5.2"), 5*time.Second) {
		t.Fatal("the ban deleted from the store still holds")
	}
}

func TestOperatorBanFromTheStore(t *testing.T) {
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Security: untrusted()})
	to := srv.addr(t, "UDP", false)
	if res := fromAddr(t, "127.0.0.4", to, options("")(), 2*time.Second); res == nil {
		t.Fatal("no answer before the ban")
	}
	// hlas ban add 127.0.0.0/30, as another process would.
	err := srv.store.PutBans(context.Background(), []store.Ban{{Prefix: netip.MustParsePrefix("127.0.0.4/30"),
		Reason: "added by an operator", Created: time.Now(), Manual: true}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for fromAddr(t, "127.0.0.5", to, options("")(), 200*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the operator's ban never took effect")
		}
	}
	if res := fromAddr(t, "127.0.0.8", to, options("")(), 2*time.Second); res == nil {
		t.Fatal("an address outside the banned prefix got no answer")
	}
}

func TestFloodBansTheSource(t *testing.T) {
	sec := untrusted()
	sec.Flood.Requests = security.Limit{Rate: 5, Burst: 10}
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Security: sec})
	to := srv.addr(t, "UDP", false)
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.6:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 40 {
		if _, err := c.WriteToUDPAddrPort([]byte(options("")()), to); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	for readResponse(t, c, 500*time.Millisecond) != nil {
		answered++
	}
	if answered == 0 || answered > 12 {
		t.Fatalf("%d of 40 requests answered; want the burst (10, and what refilled) and no more", answered)
	}
	if n := testutil.ToFloat64(srv.edge.bansTotal.WithLabelValues("flood")); n != 1 {
		t.Fatalf("bans_total{flood} = %v, want 1", n)
	}
	if res := fromAddr(t, "127.0.0.6", to, options("")(), 300*time.Millisecond); res != nil {
		t.Fatal("the flooder is answered after its ban")
	}
	if res := fromAddr(t, "127.0.0.7", to, options("")(), 2*time.Second); res == nil {
		t.Fatal("another source is not answered")
	}
}

// register sends a REGISTER for user from ip, answering a challenge with
// password (nil response: unanswered).
func registerFrom(t *testing.T, ip string, to netip.AddrPort, user, password string) *sip.Response {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	text := func(cseq, authz string) string {
		return "REGISTER sip:example.test SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + cseq + "x" + local + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:" + user + "@example.test>;tag=r1\r\nTo: <sip:" + user + "@example.test>\r\n" +
			"Call-ID: reg-" + local + "\r\nCSeq: " + cseq + " REGISTER\r\nContact: <sip:" + user + "@" + local + ">\r\n" +
			authz + "Content-Length: 0\r\n\r\n"
	}
	send := func(m string) *sip.Response {
		if _, err := c.WriteToUDPAddrPort([]byte(m), to); err != nil {
			t.Fatal(err)
		}
		return readResponse(t, c, time.Second)
	}
	res := send(text("1", ""))
	if res == nil || res.StatusCode != 401 {
		return res
	}
	ch, err := digest.ParseChallenge(res.Get("WWW-Authenticate"))
	if err != nil {
		t.Fatal(err)
	}
	cr, err := ch.Authorize(digest.Answer{Method: "REGISTER", URI: "sip:example.test", Username: user, Password: password, NC: 1, CNonce: "c0ffee"})
	if err != nil {
		t.Fatal(err)
	}
	return send(text("2", "Authorization: "+cr.String()+"\r\n"))
}

func TestPasswordGuessingIsBanned(t *testing.T) {
	sec := untrusted()
	sec.Detect.AuthFailures, sec.Detect.AuthWindow = 3, time.Minute
	srv := newTestServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"}, Security: sec})
	if err := srv.store.AddUser(context.Background(), auth.NewUser("alice", "example.test", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	to := srv.addr(t, "UDP", false)
	for i, pw := range []string{"1234", "password", "alice"} {
		res := registerFrom(t, "127.0.0.10", to, "alice", pw)
		if i < 2 && (res == nil || res.StatusCode != 401) {
			t.Fatalf("guess %d: %v, want 401", i+1, res)
		}
		if i == 2 && res != nil {
			// The guess that completed the evidence banned its source
			// while it was processed: its answer is not sent either.
			t.Fatalf("guess 3, which got its source banned, was answered %d", res.StatusCode)
		}
	}
	// Banned now: the right password from there gets no answer at all.
	if res := registerFrom(t, "127.0.0.10", to, "alice", "secret"); res != nil {
		t.Fatalf("a banned guesser got %d", res.StatusCode)
	}
	// The owner, elsewhere, registers.
	if res := registerFrom(t, "127.0.0.11", to, "alice", "secret"); res == nil || res.StatusCode != 200 {
		t.Fatalf("the owner got %v, want 200", res)
	}
	if n := testutil.ToFloat64(srv.edge.bansTotal.WithLabelValues("auth")); n != 1 {
		t.Fatalf("bans_total{auth} = %v, want 1", n)
	}
}

// A scanner walking extensions gets uniform challenges and never answers
// them: after ProbeUsers users probed (each left unanswered longer than
// the grace) its source is banned.
func TestExtensionProbingIsBanned(t *testing.T) {
	sec := untrusted()
	sec.Detect.ProbeUsers, sec.Detect.ProbeGrace = 4, 50*time.Millisecond
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"}, Security: sec})
	to := srv.addr(t, "UDP", false)
	probe := func(ext string) *sip.Response {
		return fromAddr(t, "127.0.0.12", to, "REGISTER sip:example.test SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 127.0.0.12:5060;branch=z9hG4bK"+ext+";rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:"+ext+"@example.test>;tag=s1\r\nTo: <sip:"+ext+"@example.test>\r\nCall-ID: probe-"+ext+"\r\n"+
			"CSeq: 1 REGISTER\r\nContact: <sip:"+ext+"@127.0.0.12:5060>\r\nContent-Length: 0\r\n\r\n", 500*time.Millisecond)
	}
	answered := 0
	for i := 100; i < 112; i++ {
		if probe(strconv.Itoa(i)) != nil {
			answered++
		}
		time.Sleep(60 * time.Millisecond) // past the grace: unanswered challenges count
	}
	if answered < 4 || answered > 6 {
		t.Fatalf("%d of 12 probes answered; want the ban after 4 or 5", answered)
	}
	if n := testutil.ToFloat64(srv.edge.bansTotal.WithLabelValues("scanner")); n != 1 {
		t.Fatalf("bans_total{scanner} = %v, want 1", n)
	}
}

func TestCallRateLimitPerSource(t *testing.T) {
	sec := untrusted()
	sec.Limits.SourceCallsPerMinute = 2
	// Calls from another domain's user to ours: no challenge, so the
	// source's limit applies.
	srv := startServer(t, Config{Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"other.test"}, Security: sec})
	to := srv.addr(t, "UDP", false)
	invite := func() *sip.Response {
		return fromAddr(t, "127.0.0.13", to, request("INVITE", "sip:00881234@other.test", "127.0.0.13:5060", ""), 2*time.Second)
	}
	for i := range 2 {
		if res := invite(); res == nil || res.StatusCode == 403 {
			t.Fatalf("call %d: %v, want it routed (404 here: no such user)", i+1, res)
		}
	}
	res := invite()
	if res == nil || res.StatusCode != 403 || !strings.Contains(res.Get("Warning"), "call rate limit") {
		t.Fatalf("third call in a minute: %v, want 403 with a Warning", res)
	}
}
