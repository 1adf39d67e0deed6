//go:build interop

package interop

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// RFC 3263 and ENUM routing (issue 6) with a DNS server nobody here
// wrote: dnsmasq serves the NAPTR, SRV, A and ENUM records, `hlas serve`
// routes with them, `hlas ua` phones and sipp are the endpoints.

// startDnsmasq runs dnsmasq on a free loopback port with records given as
// its options, answering only from them for far.test, dead.test and
// e164.arpa (NXDOMAIN for other names there), and returns host:port.
func startDnsmasq(t *testing.T, records ...string) string {
	t.Helper()
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startDnsmasqOn(t, port, records...)
	return addr
}

// startDnsmasqOn is startDnsmasq on a given port; stop kills it before
// the test ends (an outage), and a later call may start it again there.
func startDnsmasqOn(t *testing.T, port int, records ...string) (addr string, stop func()) {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		bin = "/usr/sbin/dnsmasq" // outside root's PATH on Debian
	}
	args := []string{"--keep-in-foreground", "--port=" + strconv.Itoa(port), "--listen-address=127.0.0.1",
		"--bind-interfaces", "--no-resolv", "--no-hosts", "--no-poll", "--conf-file=/dev/null", "--pid-file=",
		"--log-queries", "--log-facility=-", "--local=/far.test/", "--local=/dead.test/", "--local=/e164.arpa/"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root") // no switch to nobody: nothing to drop for a test
	}
	out := &outputBuffer{limit: 1 << 20}
	cmd := exec.Command(bin, append(args, records...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq (Debian package dnsmasq-base): %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		cmd.Process.Kill()
		<-done
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", out.Tail(6000))
		}
	})
	deadline := time.Now().Add(readyTimeout)
	for !strings.Contains(out.String(), "started, version") {
		select {
		case <-done:
			t.Fatalf("dnsmasq exited:\n%s", out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not start:\n%s", out.String())
		}
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), stop
}

// udpBlackhole binds a UDP port that reads and never answers: a SIP
// server that is down without an ICMP error, so that only a timeout shows
// it. It returns the port and the count of datagrams received.
func udpBlackhole(t *testing.T) (int, *atomic.Int64) {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr).Port, &n
}

func portOf(t *testing.T, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dnsServer starts `hlas serve` asking dns for RFC 3263 and ENUM: numbers
// starting with + through ENUM, far.test and dead.test through NAPTR/SRV.
func dnsServer(t *testing.T, dns string) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	cfg := fmt.Sprintf(`domain: [ example.test ]
t1: 100ms
auth: { open_domains: [ "*" ] }
dns:
  servers: [ %q ]
  blocklist_for: 1m
routing:
  rules:
    - { prefix: "+", action: enum }
    - { domain: far.test, action: resolve }
    - { domain: dead.test, action: resolve }
`, dns)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, serverConfig{args: []string{"--config", path}, dns: dns})
}

func TestDNSRoutingDnsmasq(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	light, lightContact := uaPhone(t, "bob@far.test")
	heavy, heavyContact := uaPhone(t, "bob@far.test")
	backup, backupContact := uaPhone(t, "bob@dead.test")
	deadPort, deadGot := udpBlackhole(t)
	lightAddr := strings.TrimPrefix(lightContact, "sip:bob@")
	heavyAddr := strings.TrimPrefix(heavyContact, "sip:bob@")
	backupAddr := strings.TrimPrefix(backupContact, "sip:bob@")
	dns := startDnsmasq(t,
		// far.test: NAPTR to UDP, two SRV targets of one priority, weights 1 and 3.
		"--naptr-record=far.test,10,10,s,SIP+D2U,,_sip._udp.far.test",
		"--srv-host=_sip._udp.far.test,light.far.test,"+portOf(t, lightAddr)+",0,1",
		"--srv-host=_sip._udp.far.test,heavy.far.test,"+portOf(t, heavyAddr)+",0,3",
		"--host-record=light.far.test,127.0.0.1",
		"--host-record=heavy.far.test,127.0.0.1",
		// dead.test: SRV only; the priority-0 target never answers.
		"--srv-host=_sip._udp.dead.test,sip1.dead.test,"+strconv.Itoa(deadPort)+",0,10",
		"--srv-host=_sip._udp.dead.test,sip2.dead.test,"+portOf(t, backupAddr)+",1,10",
		"--host-record=sip1.dead.test,127.0.0.1",
		"--host-record=sip2.dead.test,127.0.0.1",
		// ENUM, the number of the issue: +420224357628 → the backup phone.
		"--naptr-record=8.2.6.7.5.3.4.2.2.0.2.4.e164.arpa,10,100,u,E2U+sip,!^\\+(.*)$!sip:\\1@"+backupAddr+"!",
	)

	// What `hlas dns` sees from that server.
	out, err := exec.Command(hlasBin, "dns", "resolve", "--server", dns, "sip:bob@dead.test").CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("1. udp 127.0.0.1:%d", deadPort)) ||
		!strings.Contains(string(out), "2. udp "+backupAddr) {
		t.Fatalf("hlas dns resolve: %v\n%s", err, out)
	}
	out, err = exec.Command(hlasBin, "dns", "enum", "--server", dns, "+420224357628").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "sip:420224357628@"+backupAddr {
		t.Fatalf("hlas dns enum: %v\n%s", err, out)
	}

	s := dnsServer(t, dns)
	call := func(t *testing.T, target string) (int, string) {
		p := startUA(t, false, "call", "--user", "alice@example.test", "--server", s.UDP4, "--t1", "100ms",
			"--duration", "100ms", "--drain", "500ms", target)
		code := p.wait(t, 60*time.Second)
		return code, p.output.String()
	}
	count := func(p *uaProc, what string) int { return strings.Count(p.output.String(), what) }

	t.Run("weights 1 and 3 share the requests", func(t *testing.T) {
		const n = 200
		uac, _ := startSipp(t, "127.0.0.1", "-sf", "message_uac.xml", "-s", "bob", "-key", "domain", "far.test",
			"-m", strconv.Itoa(n), "-r", "100", "-timeout", "60s", "-timeout_error", s.UDP4)
		uac.wait(t)
		// sipp has every 200; the phones may print their last lines a
		// little after they answered.
		l, h := 0, 0
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			l, h = count(light, "<- MESSAGE from"), count(heavy, "<- MESSAGE from")
			if l+h >= n || time.Now().After(deadline) {
				break
			}
		}
		// binomial(200, 3/4): mean 150, standard deviation 6.1.
		if l+h != n || h < 125 || h > 175 {
			t.Errorf("weight 1 got %d, weight 3 got %d of %d MESSAGEs\nweight 1 phone:\n%s", l, h, n, light.output.Tail(3000))
		}
	})

	t.Run("the priority-0 target is down: timeout, then the next; the next call skips it", func(t *testing.T) {
		code, out := call(t, "sip:bob@dead.test")
		if code != 0 || !strings.Contains(out, "call established") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if deadGot.Load() == 0 {
			t.Error("the priority-0 target got nothing: it was not tried first")
		}
		before := deadGot.Load()
		code, out = call(t, "sip:bob@dead.test")
		if code != 0 {
			t.Fatalf("second call: exit %d:\n%s", code, out)
		}
		if got := deadGot.Load(); got != before {
			t.Errorf("the failed target got %d more datagrams: not avoided", got-before)
		}
		if n := count(backup, "call established"); n != 2 {
			t.Errorf("the priority-1 target had %d calls, want 2", n)
		}
	})

	t.Run("hlas ua without a proxy: SRV, the dead target, then the next", func(t *testing.T) {
		before, dead := count(backup, "call established"), deadGot.Load()
		p := startUA(t, false, "call", "--user", "alice@example.test", "--dns", dns, "--t1", "100ms",
			"--duration", "100ms", "--drain", "500ms", "sip:bob@dead.test")
		if code := p.wait(t, 60*time.Second); code != 0 || !strings.Contains(p.output.String(), "call established") {
			t.Fatalf("exit %d:\n%s", code, p.output.String())
		}
		if deadGot.Load() == dead {
			t.Error("the ua did not try the priority-0 target first")
		}
		if n := count(backup, "call established"); n != before+1 {
			t.Errorf("the priority-1 target had %d new calls, want 1", n-before)
		}
	})

	t.Run("ENUM: +420224357628 reaches the URI of its NAPTR record", func(t *testing.T) {
		before := count(backup, "call established")
		code, out := call(t, "sip:+420224357628@example.test")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if n := count(backup, "call established"); n != before+1 {
			t.Errorf("the ENUM target had %d new calls, want 1", n-before)
		}
		code, out = call(t, "sip:+420999999999@example.test")
		if code == 0 || !strings.Contains(out, "<- 404") {
			t.Errorf("a number without a record: exit %d, want 404 (no rule after enum matches):\n%s", code, out)
		}
	})

	t.Run("a target dies: calls fail over to the one left", func(t *testing.T) {
		heavy.cmd.Process.Kill()
		<-heavy.exited
		for i := range 4 {
			code, out := call(t, "sip:bob@far.test")
			if code != 0 {
				t.Fatalf("call %d: exit %d:\n%s", i+1, code, out)
			}
		}
		if n := count(light, "call established"); n != 4 {
			t.Errorf("the live target had %d calls, want 4", n)
		}
	})
	s.assertRunning(t)
}

// TestDNSOutageDnsmasq: the DNS server goes away mid-run. Calls that need
// it get 504 (RFC 3261 §21.5.5), not 404; once it has failed three times
// in a row it is passed by (RFC 2308 §7.2), so later calls fail at once;
// when it is back, a probe after dead_server_for finds it and calls go
// through again.
func TestDNSOutageDnsmasq(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	bob, bobContact := uaPhone(t, "bob@far.test")
	bobAddr := strings.TrimPrefix(bobContact, "sip:bob@")
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	// dnsmasq's own records have TTL 0 (--local-ttl): every call asks.
	records := []string{
		"--srv-host=_sip._udp.far.test,sip.far.test," + portOf(t, bobAddr) + ",0,1",
		"--host-record=sip.far.test,127.0.0.1",
	}
	dns, stop := startDnsmasqOn(t, port, records...)
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	cfg := fmt.Sprintf(`domain: [ example.test ]
t1: 100ms
auth: { open_domains: [ "*" ] }
dns: { servers: [ %q ], timeout: 300ms, attempts: 1, dead_server_for: 2s }
routing:
  rules:
    - { domain: far.test, action: resolve }
`, dns)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, serverConfig{args: []string{"--config", path}, dns: dns})
	call := func() (int, string) {
		p := startUA(t, false, "call", "--user", "alice@example.test", "--server", s.UDP4, "--t1", "100ms",
			"--duration", "100ms", "--drain", "500ms", "sip:bob@far.test")
		code := p.wait(t, 60*time.Second)
		return code, p.output.String()
	}
	established := func() int { return strings.Count(bob.output.String(), "call established") }

	if code, out := call(); code != 0 || !strings.Contains(out, "call established") {
		t.Fatalf("call with the DNS up: exit %d:\n%s", code, out)
	}
	stop()
	for i := range 4 {
		code, out := call()
		if code == 0 || !strings.Contains(out, "<- 504") {
			t.Fatalf("call %d with the DNS down: exit %d, want 504:\n%s", i+1, code, out)
		}
	}
	if n := established(); n != 1 {
		t.Errorf("bob had %d calls, want only the first", n)
	}
	// The later calls did not ask the dead server: the proxy's debug log
	// gives the resolver's reason.
	if !strings.Contains(s.output.String(), "deemed dead") {
		t.Errorf("no lookup passed the dead DNS server by:\n%s", s.output.Tail(4000))
	}
	startDnsmasqOn(t, port, records...)
	// The server is passed by until dead_server_for (2s) is up; then a
	// call probes it and gets through.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out := call()
		if code == 0 && strings.Contains(out, "call established") {
			break
		}
		if !strings.Contains(out, "<- 504") {
			t.Fatalf("call while the DNS comes back: exit %d, want 504 or an established call:\n%s", code, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls still fail 20 s after the DNS came back:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := established(); n != 2 {
		t.Errorf("bob had %d calls, want 2", n)
	}
	s.assertRunning(t)
}
