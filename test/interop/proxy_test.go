//go:build interop

package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The proxy (issue 5) between real peers: sipp as caller and callee
// (testdata/proxy_uac.xml, proxy_uas.xml), and `hlas ua` phones. The
// location service is static (routing.locations in the YAML file).

// proxyServer starts `hlas serve` with the routing section given as YAML
// (indented under "routing:") and example.test as its domain.
func proxyServer(t *testing.T, routing string) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	// The phones have no subscriber accounts: these tests are about
	// routing, so authentication is off for every domain.
	cfg := "domain: [ example.test ]\nt1: 100ms\nauth: { open_domains: [ \"*\" ] }\nrouting:\n" + routing
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, serverConfig{args: []string{"--config", path}})
}

// TestProxySipp: calls from sipp through hlas to sipp, stateful and
// stateless, the caller over UDP and TCP.
func TestProxySipp(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	for _, tc := range []struct{ name, mode, uacTransport string }{
		{"stateful udp", "stateful", "u1"},
		{"stateful tcp to udp", "stateful", "t1"},
		{"stateless udp", "stateless", "u1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const calls = 40
			uas, port := startSipp(t, "127.0.0.1", "-sf", "proxy_uas.xml", "-m", strconv.Itoa(calls),
				"-timeout", "60s", "-timeout_error")
			time.Sleep(300 * time.Millisecond) // sipp binds
			s := proxyServer(t, fmt.Sprintf("  mode: %s\n  locations:\n    bob@example.test: [ \"sip:bob@127.0.0.1:%d\" ]\n", tc.mode, port))
			remote := s.UDP4
			if tc.uacTransport == "t1" {
				remote = s.TCP4
			}
			uac, _ := startSipp(t, "127.0.0.1", "-sf", "proxy_uac.xml", "-s", "bob", "-t", tc.uacTransport,
				"-m", strconv.Itoa(calls), "-r", "20", "-timeout", "60s", "-timeout_error", remote)
			uac.wait(t)
			uas.wait(t)
			s.assertRunning(t)
		})
	}
}

// uaPhone starts `hlas ua answer` as user on a free port with extra
// flags and returns the process and its contact URI.
func uaPhone(t *testing.T, user string, flags ...string) (*uaProc, string) {
	t.Helper()
	addr := uaListenAddr(t)
	args := append([]string{"answer", "--user", user, "--local", addr, "--t1", "100ms", "--drain", "5s"}, flags...)
	p := startUA(t, true, args...)
	u, _, _ := strings.Cut(user, "@")
	return p, "sip:" + u + "@" + addr
}

// TestProxyUA: `hlas ua` phones calling each other through the proxy.
func TestProxyUA(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	call := func(t *testing.T, s *server, target string, flags ...string) (int, string) {
		args := append([]string{"call", "--user", "alice@example.test", "--server", s.UDP4, "--t1", "100ms",
			"--duration", "200ms", "--drain", "5s"}, flags...)
		p := startUA(t, false, append(args, target)...)
		code := p.wait(t, 60*time.Second)
		return code, p.output.String()
	}
	t.Run("answer", func(t *testing.T) {
		bob, contact := uaPhone(t, "bob@example.test", "--max-calls", "1")
		s := proxyServer(t, fmt.Sprintf("  locations:\n    bob@example.test: [ %q ]\n", contact))
		code, out := call(t, s, "sip:bob@example.test")
		if code != 0 || !strings.Contains(out, "<- 180 Ringing") || !strings.Contains(out, "<- 200 OK (BYE)") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		bob.wait(t, 30*time.Second)
		if o := bob.output.String(); !strings.Contains(o, "<- BYE") {
			t.Errorf("bob did not get the BYE:\n%s", o)
		}
	})
	t.Run("busy 486", func(t *testing.T) {
		_, contact := uaPhone(t, "bob@example.test", "--code", "486")
		s := proxyServer(t, fmt.Sprintf("  locations:\n    bob@example.test: [ %q ]\n", contact))
		code, out := call(t, s, "sip:bob@example.test")
		if code != 1 || !strings.Contains(out, "<- 486 Busy Here") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	t.Run("no answer: Timer C, 408", func(t *testing.T) {
		_, contact := uaPhone(t, "bob@example.test", "--ring", "30s")
		s := proxyServer(t, fmt.Sprintf("  timer_c: 1s\n  locations:\n    bob@example.test: [ %q ]\n", contact))
		code, out := call(t, s, "sip:bob@example.test")
		if code != 1 || !strings.Contains(out, "<- 408 Request Timeout") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	t.Run("caller cancels: 487", func(t *testing.T) {
		bob, contact := uaPhone(t, "bob@example.test", "--ring", "30s", "--max-calls", "1")
		s := proxyServer(t, fmt.Sprintf("  locations:\n    bob@example.test: [ %q ]\n", contact))
		code, out := call(t, s, "sip:bob@example.test", "--timeout", "1s")
		if code != 1 || !strings.Contains(out, "<- 487 Request Terminated") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		bob.wait(t, 30*time.Second)
		if o := bob.output.String(); !strings.Contains(o, "call ended: ua: call cancelled") {
			t.Errorf("bob:\n%s", o)
		}
	})
	t.Run("forking: the first to answer wins, the other is cancelled", func(t *testing.T) {
		desk, c1 := uaPhone(t, "bob@example.test", "--ring", "30s", "--max-calls", "1")
		mobile, c2 := uaPhone(t, "bob@example.test", "--ring", "300ms", "--max-calls", "1")
		s := proxyServer(t, fmt.Sprintf("  locations:\n    bob@example.test: [ %q, %q ]\n", c1, c2))
		code, out := call(t, s, "sip:bob@example.test")
		if code != 0 {
			t.Errorf("exit %d:\n%s", code, out)
		}
		desk.wait(t, 30*time.Second)
		mobile.wait(t, 30*time.Second)
		if o := desk.output.String(); !strings.Contains(o, "call ended: ua: call cancelled") {
			t.Errorf("desk phone:\n%s", o)
		}
		if o := mobile.output.String(); !strings.Contains(o, "call established") {
			t.Errorf("mobile:\n%s", o)
		}
	})
	t.Run("sequential forking by q", func(t *testing.T) {
		_, c1 := uaPhone(t, "bob@example.test", "--code", "480")
		mobile, c2 := uaPhone(t, "bob@example.test", "--max-calls", "1")
		s := proxyServer(t, fmt.Sprintf("  locations:\n    bob@example.test: [ \"%s;q=1\", \"%s;q=0.3\" ]\n", c1, c2))
		code, out := call(t, s, "sip:bob@example.test")
		if code != 0 {
			t.Errorf("exit %d:\n%s", code, out)
		}
		mobile.wait(t, 30*time.Second)
	})
	t.Run("redirect mode: 302 followed by the caller", func(t *testing.T) {
		bob, contact := uaPhone(t, "bob@example.test", "--max-calls", "1")
		s := proxyServer(t, fmt.Sprintf("  mode: redirect\n  locations:\n    bob@127.0.0.1: [ %q ]\n", contact))
		p := startUA(t, false, "call", "--user", "alice@example.test", "--t1", "100ms", "--duration", "200ms",
			"--drain", "5s", "sip:bob@"+s.UDP4)
		code := p.wait(t, 60*time.Second)
		out := p.output.String()
		if code != 0 || !strings.Contains(out, "<- 302 Moved Temporarily") || !strings.Contains(out, "call established") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		bob.wait(t, 30*time.Second)
	})
	t.Run("gateway failover: 503, then the next gateway", func(t *testing.T) {
		gw1 := uaListenAddr(t)
		startUA(t, true, "answer", "--user", "gw@gw1.test", "--local", gw1, "--code", "503", "--t1", "100ms")
		gw2proc, gw2c := uaPhone(t, "gw@gw2.test", "--max-calls", "1")
		gw2 := strings.TrimPrefix(gw2c, "sip:gw@")
		s := proxyServer(t, fmt.Sprintf("  gateways:\n    pstn:\n      - { uri: \"sip:%s\", priority: 1 }\n      - { uri: \"sip:%s\", priority: 2 }\n"+
			"  rules:\n    - { prefix: \"0\", action: forward, gateways: pstn }\n", gw1, gw2))
		code, out := call(t, s, "sip:0123456@example.test")
		if code != 0 {
			t.Errorf("exit %d:\n%s", code, out)
		}
		gw2proc.wait(t, 30*time.Second)
	})
}
