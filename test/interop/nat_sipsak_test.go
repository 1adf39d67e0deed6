//go:build interop

package interop

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// NAT in the signalling (issue 12, item 3; docs/nat.md). Test names start
// with SignalNAT (NAT alone is the media relay's).

// natWait bounds the wait for a request the server should send.
const natWait = 15 * time.Second

// natOpenConfig serves example.test without digest authentication, so that
// sipsak and raw sockets can register.
const natOpenConfig = "auth:\n  open_domains: [example.test]\n"

// TestSignalNATSipsakContact: sipsak's usrloc mode sends its REGISTER
// from one socket and lists another port, the one it listens on (-l), in
// Via and Contact, with the same address. That is no NAT: an OPTIONS sent through
// hlas to the user must reach the Contact's port, not the REGISTER's
// source port, which is closed once sipsak is done (the rule before
// nat.contact took any Contact port other than the source port for a NAT).
//
// sipsak 0.9.8.1 cannot receive the request itself: its -M and -I modes
// crash building their reply (repl_buff is NULL; fixed upstream after the
// release). So sipsak registers and exits, the test binds the port sipsak
// listened on, as sipsak's listening socket, and a second sipsak run
// sends the OPTIONS through hlas and must get the test's 200 back.
func TestSignalNATSipsakContact(t *testing.T) {
	srv := regServer(t, t.TempDir(), natOpenConfig, true) // sipsak needs four-digit ports
	lport, err := freePort("127.0.0.1", true)
	if err != nil {
		t.Fatal(err)
	}
	aor := "sip:alice@" + srv.UDP4
	out, err := runSipsak(t, "-U", "-s", aor, "-H", "127.0.0.1", "-l", strconv.Itoa(lport), "-x", "120", "-i", "-vv")
	if err != nil || !strings.Contains(out, "completed successful") {
		t.Fatalf("sipsak -U: %v\n%s", err, tail(out, 4000))
	}

	listen, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(lport))))
	if err != nil {
		t.Fatalf("bind sipsak's listening port %d: %v", lport, err)
	}
	defer listen.Close()

	ctx, cancel := context.WithTimeout(context.Background(), sipsakTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipsak", "-s", aor, "-H", "127.0.0.1", "-vv")
	var sent bytes.Buffer
	cmd.Stdout, cmd.Stderr = &sent, &sent
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	req, from := readRequest(t, listen, natWait)
	if req == nil {
		cancel()
		_ = cmd.Wait()
		t.Fatalf("no OPTIONS reached the Contact's port %d within %v: hlas sent it elsewhere (the REGISTER's source port?)\nsipsak:\n%s\nhlas:\n%s",
			lport, natWait, tail(sent.String(), 3000), srv.output.Tail(6000))
	}
	if req.Method != sip.OPTIONS || req.URI.User != "alice" || req.URI.Port != lport {
		t.Errorf("got %s %s, want OPTIONS to sipsak's Contact sip:alice@127.0.0.1:%d", req.Method, req.URI.String(), lport)
	}
	if _, err := listen.WriteToUDPAddrPort([]byte(sip.NewResponse(req, 200, "").String()), from); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || !sipsakFinal.MatchString(sent.String()) {
		t.Errorf("sipsak OPTIONS to %s: %v, want exit 0 and the 200 in its output:\n%s", aor, err, tail(sent.String(), 4000))
	}
}

// TestSignalNATKeepAlive: a UA whose REGISTER shows a NAT (its Via names
// a private address) is pinged with OPTIONS from the server's socket to the
// REGISTER's source; it stays registered while it answers, and is removed —
// from the store too, as `hlas reg list` shows — once a ping goes
// unanswered (keepalive_failures 1, T1 50 ms: a ping times out after
// 3.2 s).
func TestSignalNATKeepAlive(t *testing.T) {
	data := t.TempDir()
	srv := regServer(t, data, natOpenConfig+"t1: 50ms\nnat:\n  keepalive_interval: 1s\n  keepalive_failures: 1\n", false)
	ua, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	server, err := netip.ParseAddrPort(srv.UDP4)
	if err != nil {
		t.Fatal(err)
	}
	register := "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-natka-1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:carol@example.test>;tag=ka\r\nTo: <sip:carol@example.test>\r\nCall-ID: natka@10.0.0.5\r\n" +
		"CSeq: 1 REGISTER\r\nContact: <sip:carol@10.0.0.5:5060>;expires=300\r\nContent-Length: 0\r\n\r\n"
	if _, err := ua.WriteToUDPAddrPort([]byte(register), server); err != nil {
		t.Fatal(err)
	}
	res := readMessage(t, ua, natWait)
	if r, ok := res.(*sip.Response); !ok || r.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", res)
	}

	// Pings come to the REGISTER's source; answered, even with 405, the
	// binding stays. Each is answered, retransmissions too; two pings
	// (two branches) are wanted.
	branches := map[string]bool{}
	for i := 0; len(branches) < 2; i++ {
		req, from := readRequest(t, ua, natWait)
		if req == nil || req.Method != sip.OPTIONS {
			t.Fatalf("ping %d: got %v, want an OPTIONS to the REGISTER's source\nhlas:\n%s", i+1, req, srv.output.Tail(6000))
		}
		branches[req.Via[0].Branch()] = true
		if from != server {
			t.Errorf("ping %d came from %v, want the socket the REGISTER went to, %v", i+1, from, server)
		}
		if req.URI.String() != "sip:carol@10.0.0.5:5060" {
			t.Errorf("ping %d: Request-URI %s, want the Contact", i+1, req.URI.String())
		}
		if _, err := ua.WriteToUDPAddrPort([]byte(sip.NewResponse(req, 405, "").String()), from); err != nil {
			t.Fatal(err)
		}
	}
	if n := natRegCount(t, data, "carol@example.test"); n != 1 {
		t.Fatalf("carol has %d bindings while answering pings, want 1", n)
	}

	// Silent from now on: removed once a ping times out.
	deadline := time.Now().Add(natWait + 10*time.Second)
	for natRegCount(t, data, "carol@example.test") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("carol still registered after her keep-alives went unanswered\nhlas:\n%s", srv.output.Tail(6000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(srv.output.String(), `msg="binding removed"`) {
		t.Errorf("the removal was not logged:\n%s", srv.output.Tail(4000))
	}
}

// readMessage reads the next SIP message arriving at c within d; nil when
// none does.
func readMessage(t *testing.T, c *net.UDPConn, d time.Duration) sip.Message {
	t.Helper()
	m, _ := readFrom(t, c, d)
	return m
}

// readRequest reads the next request arriving at c within d, skipping
// responses; nil when none comes.
func readRequest(t *testing.T, c *net.UDPConn, d time.Duration) (*sip.Request, netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, from := readFrom(t, c, time.Until(deadline))
		if m == nil {
			return nil, netip.AddrPort{}
		}
		if req, ok := m.(*sip.Request); ok {
			return req, from
		}
	}
}

func readFrom(t *testing.T, c *net.UDPConn, d time.Duration) (sip.Message, netip.AddrPort) {
	t.Helper()
	if d <= 0 {
		return nil, netip.AddrPort{}
	}
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}
	}
	m, err := sip.Parse(buf[:n])
	if err != nil {
		t.Fatalf("from %v: %v\n%s", from, err, buf[:n])
	}
	return m, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// natRegCount counts the bindings of aor that `hlas reg list` shows.
func natRegCount(t *testing.T, data, aor string) int {
	t.Helper()
	out, err := hlasCmd(t, "", "reg", "list", "--data", data)
	if err != nil {
		t.Fatalf("hlas reg list: %v\n%s", err, out)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, aor) {
			n++
		}
	}
	return n
}
