//go:build interop

package interop

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Calls through the proxy between phones that register with digest
// authentication to `hlas serve` (registrar and location service,
// subscribers created with `hlas user add`): every REGISTER is challenged
// with 401 and every INVITE from a subscriber with 407 (RFC 3261 §22.2,
// §22.3), and the proxy finds the callee in the bindings the registrar
// holds. Test names start with ProxyRegistered.

// regSubscribers are the accounts of example.test: user → password.
// carol never registers (480); dave is baresip.
var regSubscribers = map[string]string{
	"alice": "alice-Pw-4711",
	"bob":   "bob-Pw-0815",
	"carol": "carol-Pw-2342",
	"dave":  "dave-Pw-1234",
}

// regProxyServer creates the subscribers with `hlas user add` in a fresh
// data directory and starts `hlas serve` on it with example.test as its
// domain, authentication on (the default) and routing (YAML indented under
// "routing:"; empty for the defaults).
func regProxyServer(t *testing.T, routing string) *server {
	t.Helper()
	data := t.TempDir()
	users := make([]string, 0, len(regSubscribers))
	for u := range regSubscribers {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if out, err := hlasCmd(t, "", "user", "add", u+"@example.test", "--password", regSubscribers[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	cfg := "domain: [ example.test ]\nt1: 100ms\n"
	if routing != "" {
		cfg += "routing:\n" + routing
	}
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data}})
}

// regPhone starts `hlas ua answer --register` as user@example.test over
// transport (udp or tcp) with extra flags, and requires that it registered
// after a 401 challenge. It returns once the phone is registered and
// listening.
func regPhone(t *testing.T, s *server, transport, user string, flags ...string) *uaProc {
	t.Helper()
	args := append([]string{"answer", "--register", "--server", s.UDP4, "--transport", transport,
		"--user", user + "@example.test", "--password", regSubscribers[user],
		"--local", uaListenAddr(t), "--t1", "100ms", "--drain", "1s"}, flags...)
	p := startUA(t, true, args...)
	out := p.output.String()
	if !strings.Contains(out, "<- 401 Unauthorized (REGISTER)") || !strings.Contains(out, "<- 200 OK (REGISTER)") {
		t.Fatalf("%s did not register after a 401 challenge:\n%s", user, out)
	}
	return p
}

// regCall runs `hlas ua call` as alice (registered first when register is
// set) over transport with the proxy as outbound proxy, and returns its
// exit code and output.
func regCall(t *testing.T, s *server, transport, target string, flags ...string) (int, string) {
	t.Helper()
	args := append([]string{"call", "--user", "alice@example.test", "--password", regSubscribers["alice"],
		"--server", s.UDP4, "--transport", transport, "--local", uaListenAddr(t),
		"--t1", "100ms", "--duration", "200ms", "--drain", "1s"}, flags...)
	p := startUA(t, false, append(args, target)...)
	code := p.wait(t, 60*time.Second)
	return code, p.output.String()
}

// wantLines fails the test unless out has every line of want, in order.
func wantLines(t *testing.T, who, out string, want ...string) {
	t.Helper()
	if missing, ok := inOrder(out, want...); !ok {
		t.Errorf("%s: no %q (in order) in:\n%s", who, missing, out)
	}
}

// inOrder reports whether out holds want in this order, and if not,
// the first of want it lacks.
func inOrder(out string, want ...string) (missing string, ok bool) {
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			return w, false
		}
		rest = rest[i+len(w):]
	}
	return "", true
}

// noLine fails the test if out has any of bad.
func noLine(t *testing.T, who, out string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(out, b) {
			t.Errorf("%s: unexpected %q in:\n%s", who, b, out)
		}
	}
}

// challenged is what the caller prints for an INVITE challenged with 407
// and sent again with credentials.
var challenged = []string{"-> INVITE", "<- 407 Proxy Authentication Required"}

// TestProxyRegisteredUA: `hlas ua` phones registered with passwords call
// each other through the proxy, over UDP and over TCP.
func TestProxyRegisteredUA(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	overTransports(t, func(t *testing.T, tr string) {
		t.Run("answer and BYE", func(t *testing.T) {
			s := regProxyServer(t, "")
			bob := regPhone(t, s, tr, "bob", "--max-calls", "1")
			code, out := regCall(t, s, tr, "sip:bob@example.test", "--register")
			if code != 0 {
				t.Errorf("alice: exit %d", code)
			}
			wantLines(t, "alice", out, "<- 401 Unauthorized (REGISTER)", "<- 200 OK (REGISTER)")
			wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 200 OK", "call established",
				"-> BYE", "<- 200 OK (BYE)", "call ended")...)
			if c := bob.wait(t, 30*time.Second); c != 0 {
				t.Errorf("bob: exit %d", c)
			}
			bo := bob.output.String()
			wantLines(t, "bob", bo, "<- INVITE from sip:alice@example.test to sip:bob@127.0.0.1:", "-> 180 Ringing",
				"-> 200 OK", "call established", "<- BYE", "call ended: ua: remote hung up",
				"-> REGISTER sip:bob@example.test (expires 0)", "<- 200 OK (REGISTER)")
		})
		t.Run("wrong password: 407 again, the callee never rings", func(t *testing.T) {
			s := regProxyServer(t, "")
			bob := regPhone(t, s, tr, "bob")
			args := []string{"call", "--user", "alice@example.test", "--password", "not-her-password",
				"--server", s.UDP4, "--transport", tr, "--t1", "100ms", "--drain", "1s", "sip:bob@example.test"}
			p := startUA(t, false, args...)
			if code := p.wait(t, 30*time.Second); code != 1 {
				t.Errorf("alice: exit %d, want 1", code)
			}
			out := p.output.String()
			wantLines(t, "alice", out, "<- 407 Proxy Authentication Required", "<- 407 Proxy Authentication Required")
			noLine(t, "alice", out, "<- 180", "<- 200")
			noLine(t, "bob", bob.output.String(), "<- INVITE")
		})
		t.Run("busy 486", func(t *testing.T) {
			s := regProxyServer(t, "")
			bob := regPhone(t, s, tr, "bob", "--code", "486", "--max-calls", "1")
			code, out := regCall(t, s, tr, "sip:bob@example.test")
			if code != 1 {
				t.Errorf("alice: exit %d, want 1", code)
			}
			wantLines(t, "alice", out, append(challenged, "<- 486 Busy Here")...)
			noLine(t, "alice", out, "call established")
			bob.wait(t, 30*time.Second)
			wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:alice@example.test", "-> 486 Busy Here")
		})
		t.Run("caller cancels: 487", func(t *testing.T) {
			s := regProxyServer(t, "")
			bob := regPhone(t, s, tr, "bob", "--ring", "30s", "--max-calls", "1")
			code, out := regCall(t, s, tr, "sip:bob@example.test", "--timeout", "1s")
			if code != 1 {
				t.Errorf("alice: exit %d, want 1", code)
			}
			wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 487 Request Terminated", "timeout after 1s: cancelled")...)
			if c := bob.wait(t, 30*time.Second); c != 0 {
				t.Errorf("bob: exit %d", c)
			}
			wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:alice@example.test", "-> 180 Ringing",
				"call ended: ua: call cancelled")
		})
		t.Run("no answer: Timer C, 408", func(t *testing.T) {
			s := regProxyServer(t, "  timer_c: 1s\n")
			bob := regPhone(t, s, tr, "bob", "--ring", "30s", "--max-calls", "1")
			start := time.Now()
			code, out := regCall(t, s, tr, "sip:bob@example.test")
			if code != 1 {
				t.Errorf("alice: exit %d, want 1", code)
			}
			if d := time.Since(start); d < time.Second {
				t.Errorf("408 after %v, before Timer C (1s)", d)
			}
			wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 408 Request Timeout")...)
			// On Timer C the proxy cancels the branch (RFC 3261 §16.8).
			if c := bob.wait(t, 30*time.Second); c != 0 {
				t.Errorf("bob: exit %d", c)
			}
			wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:alice@example.test", "-> 180 Ringing",
				"call ended: ua: call cancelled")
		})
		t.Run("subscriber not registered: 480, unknown user: 404", func(t *testing.T) {
			s := regProxyServer(t, "")
			code, out := regCall(t, s, tr, "sip:carol@example.test")
			if code != 1 {
				t.Errorf("call carol: exit %d, want 1", code)
			}
			wantLines(t, "alice", out, append(challenged, "<- 480 Temporarily Unavailable")...)
			code, out = regCall(t, s, tr, "sip:nobody@example.test")
			if code != 1 {
				t.Errorf("call nobody: exit %d, want 1", code)
			}
			wantLines(t, "alice", out, append(challenged, "<- 404 Not Found")...)
		})
		t.Run("forking: the first to answer wins, the other is cancelled", func(t *testing.T) {
			s := regProxyServer(t, "")
			desk := regPhone(t, s, tr, "bob", "--ring", "30s", "--max-calls", "1")
			mobile := regPhone(t, s, tr, "bob", "--ring", "300ms", "--max-calls", "1")
			code, out := regCall(t, s, tr, "sip:bob@example.test")
			if code != 0 {
				t.Errorf("alice: exit %d", code)
			}
			wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 200 OK", "call established", "<- 200 OK (BYE)")...)
			desk.wait(t, 30*time.Second)
			mobile.wait(t, 30*time.Second)
			wantLines(t, "desk", desk.output.String(), "<- INVITE from sip:alice@example.test", "-> 180 Ringing",
				"call ended: ua: call cancelled")
			mo := mobile.output.String()
			wantLines(t, "mobile", mo, "<- INVITE from sip:alice@example.test", "-> 180 Ringing", "-> 200 OK",
				"call established", "<- BYE", "call ended: ua: remote hung up")
			noLine(t, "mobile", mo, "call cancelled")
		})
		t.Run("sequential forking by q", func(t *testing.T) {
			s := regProxyServer(t, "")
			// The desk phone (q=1) is tried first and declines after
			// ringing 300ms; only then does the mobile (q=0.5) ring. Were
			// they forked in parallel, the mobile would answer at once
			// and the desk phone would be cancelled instead.
			desk := regPhone(t, s, tr, "bob", "--q", "1", "--ring", "300ms", "--code", "480", "--max-calls", "1")
			mobile := regPhone(t, s, tr, "bob", "--q", "0.5", "--max-calls", "1")
			code, out := regCall(t, s, tr, "sip:bob@example.test")
			if code != 0 {
				t.Errorf("alice: exit %d", code)
			}
			wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 200 OK", "call established", "<- 200 OK (BYE)")...)
			desk.wait(t, 30*time.Second)
			mobile.wait(t, 30*time.Second)
			do := desk.output.String()
			wantLines(t, "desk", do, "<- INVITE from sip:alice@example.test", "-> 180 Ringing", "-> 480 Temporarily Unavailable")
			noLine(t, "desk", do, "call cancelled")
			wantLines(t, "mobile", mobile.output.String(), "<- INVITE from sip:alice@example.test", "-> 200 OK",
				"call established", "<- BYE")
		})
	})
}

// TestProxyRegisteredRedirect: in redirect mode the server registers
// phones but routes nothing itself: alice's INVITE to the server is
// challenged (407), answered 302 with bob's registered contact, and alice
// calls bob there directly (RFC 3261 §8.1.3.4).
func TestProxyRegisteredRedirect(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	overTransports(t, func(t *testing.T, tr string) {
		s := regProxyServer(t, "  mode: redirect\n")
		bob := regPhone(t, s, tr, "bob", "--max-calls", "1")
		target := "sip:bob@" + s.UDP4
		if tr == "tcp" {
			target += ";transport=tcp"
		}
		p := startUA(t, false, "call", "--user", "alice@example.test", "--password", regSubscribers["alice"],
			"--transport", tr, "--t1", "100ms", "--duration", "200ms", "--drain", "1s", target)
		if code := p.wait(t, 60*time.Second); code != 0 {
			t.Errorf("alice: exit %d", code)
		}
		out := p.output.String()
		wantLines(t, "alice", out, append(challenged, "<- 302 Moved Temporarily", "<- 180 Ringing", "<- 200 OK",
			"call established", "<- 200 OK (BYE)")...)
		bob.wait(t, 30*time.Second)
		bo := bob.output.String()
		// bob's INVITE came from alice herself: its Request-URI is
		// bob's registered contact, and it has no Record-Route of the
		// server, so the BYE came straight from alice too.
		wantLines(t, "bob", bo, "<- INVITE from sip:alice@example.test to sip:bob@127.0.0.1:", "call established", "<- BYE")
	})
}

// TestProxyRegisteredSipp: sipp users. sipp registers bob with digest
// (testdata/reg_auth_uas.xml) and takes a call as bob
// (reg_auth_uas_call.xml); a sipp caller authenticated as alice calls him
// through the proxy, answering the 407 (proxy_uac_auth.xml). Then `hlas ua`
// as alice calls sipp's bob, and the sipp caller calls a registered `hlas
// ua` bob.
func TestProxyRegisteredSipp(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	for _, tc := range uaTransports {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A server per case: sipp leaves its binding behind.
			sippBob := func(t *testing.T, s *server) *sippRun {
				t.Helper()
				call, err := filepath.Abs(filepath.Join("testdata", "reg_auth_uas_call.xml"))
				if err != nil {
					t.Fatal(err)
				}
				uas, _ := startSipp(t, "127.0.0.1", "-sf", "reg_auth_uas.xml", "-oocsf", call,
					"-t", tc.sipp, "-set", "user", "bob", "-au", "bob", "-ap", regSubscribers["bob"],
					"-m", "1", "-timeout", "30s", "-timeout_error", s.UDP4)
				waitBinding(t, s, "bob", uas)
				return uas
			}
			sippAlice := func(t *testing.T, s *server) *sippRun {
				t.Helper()
				uac, _ := startSipp(t, "127.0.0.1", "-sf", "proxy_uac_auth.xml", "-s", "bob",
					"-t", tc.sipp, "-set", "caller", "alice", "-au", "alice", "-ap", regSubscribers["alice"],
					"-m", "1", "-timeout", "30s", "-timeout_error", s.UDP4)
				return uac
			}
			t.Run("sipp calls sipp", func(t *testing.T) {
				s := regProxyServer(t, "")
				uas := sippBob(t, s)
				sippAlice(t, s).wait(t)
				uas.wait(t)
			})
			t.Run("hlas ua calls sipp", func(t *testing.T) {
				s := regProxyServer(t, "")
				uas := sippBob(t, s)
				code, out := regCall(t, s, tc.name, "sip:bob@example.test")
				if code != 0 {
					t.Errorf("alice: exit %d", code)
				}
				wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 200 OK", "call established", "<- 200 OK (BYE)")...)
				uas.wait(t)
			})
			t.Run("sipp calls hlas ua", func(t *testing.T) {
				s := regProxyServer(t, "")
				bob := regPhone(t, s, tc.name, "bob", "--max-calls", "1")
				sippAlice(t, s).wait(t)
				if c := bob.wait(t, 30*time.Second); c != 0 {
					t.Errorf("bob: exit %d", c)
				}
				wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:alice@example.test", "-> 200 OK",
					"call established", "<- BYE", "call ended: ua: remote hung up")
			})
		})
	}
}

// waitBinding waits until user@example.test has a binding, asking the
// registrar with a REGISTER without Contact (RFC 3261 §10.2.3).
func waitBinding(t *testing.T, s *server, user string, sipp *sippRun) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-sipp.done:
			sipp.done <- err // for sipp.wait
			t.Fatalf("sipp exited before %s registered: %v\n%s", user, err, tail(sipp.out.String(), 4000))
		default:
		}
		res := digestQuery(t, s.UDP4, user, regSubscribers[user])
		if res.StatusCode == 200 && len(res.Contact) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not register: last query answered %d with %d contacts", user, res.StatusCode, len(res.Contact))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// regBaresip starts baresip registered as dave@example.test through the
// proxy over transport (digest: auth_pass), answering calls
// automatically, for at most life, with commands run at start, and waits
// for its registration.
func regBaresip(t *testing.T, s *server, transport string, life time.Duration, commands ...string) (*outputBuffer, chan error) {
	t.Helper()
	dir := baresipConfig(t, uaListenAddr(t))
	account := fmt.Sprintf("<sip:dave@example.test;transport=%s>;auth_pass=%s;outbound=\"sip:%s;transport=%s\";"+
		"regint=60;answermode=auto;audio_codecs=PCMU/8000/1,PCMA/8000/1\n", transport, regSubscribers["dave"], s.UDP4, transport)
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o600); err != nil {
		t.Fatal(err)
	}
	out, done := startBaresip(t, dir, life, commands...)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "200 OK") {
		select {
		case err := <-done:
			t.Fatalf("baresip exited before registering: %v\n%s", err, tail(out.String(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not register:\n%s", tail(out.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out, done
}

// TestProxyRegisteredBaresip: baresip, registered with digest, calls a
// registered `hlas ua` phone through the proxy (answering the 407 itself)
// and is called by one.
func TestProxyRegisteredBaresip(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	overTransports(t, func(t *testing.T, tr string) {
		t.Run("baresip calls hlas ua", func(t *testing.T) {
			s := regProxyServer(t, "")
			bob := regPhone(t, s, tr, "bob", "--max-calls", "1")
			out, done := regBaresip(t, s, tr, 4*time.Second, "/dial sip:bob@example.test")
			if err := <-done; err != nil {
				t.Errorf("baresip: %v", err)
			}
			if c := bob.wait(t, 30*time.Second); c != 0 {
				t.Errorf("bob: exit %d", c)
			}
			wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:dave@example.test", "-> 200 OK",
				"call established", "<- BYE", "call ended: ua: remote hung up")
			if bs := out.String(); !strings.Contains(bs, "Call established") {
				t.Errorf("baresip:\n%s", tail(bs, 4000))
			}
		})
		t.Run("hlas ua calls baresip", func(t *testing.T) {
			s := regProxyServer(t, "")
			out, done := regBaresip(t, s, tr, 5*time.Second)
			code, ao := regCall(t, s, tr, "sip:dave@example.test", "--duration", "1s")
			if code != 0 {
				t.Errorf("alice: exit %d", code)
			}
			wantLines(t, "alice", ao, append(challenged, "<- 180 Ringing", "<- 200 ", "call established", "-> BYE", "<- 200 OK (BYE)")...)
			if err := <-done; err != nil {
				t.Errorf("baresip: %v", err)
			}
			if bs := out.String(); !strings.Contains(bs, "Call established") || !strings.Contains(bs, "terminated") {
				t.Errorf("baresip did not see the call:\n%s", tail(bs, 4000))
			}
		})
	})
}

// natPhone starts a registered bob behind a simulated NAT: his Contact
// and Via name 127.0.0.1 at a port nobody listens on (his address on the
// private side), while his REGISTER comes from the socket he really
// listens on (the NAT's public side). The registrar keeps that flow; only
// over it can bob be reached.
func natPhone(t *testing.T, s *server, transport string, flags ...string) (*uaProc, string) {
	t.Helper()
	// A private address (RFC 1918) with a port bound by nobody: what a
	// phone behind a NAT writes, and nobody here can reach.
	_, port, err := net.SplitHostPort(uaListenAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	private := net.JoinHostPort("10.0.0.1", port)
	p := regPhone(t, s, transport, "bob", append([]string{"--contact", private}, flags...)...)
	if !strings.Contains(p.output.String(), "registered sip:bob@example.test at sip:bob@"+private) {
		t.Fatalf("bob did not register the private contact %s:\n%s", private, p.output.String())
	}
	return p, private
}

// TestProxyRegisteredNAT: an INVITE to a phone behind a NAT goes over the
// flow its REGISTER came on, not to the unreachable Contact (RFC 5626
// §5.3 in spirit; Kamailio's fix_nated_register).
func TestProxyRegisteredNAT(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	overTransports(t, func(t *testing.T, tr string) {
		s := regProxyServer(t, "")
		// 486: no dialog, so nothing but the INVITE transaction (and
		// its hop-by-hop ACK) has to reach bob.
		bob, private := natPhone(t, s, tr, "--code", "486", "--max-calls", "1")
		code, out := regCall(t, s, tr, "sip:bob@example.test")
		if code != 1 {
			t.Errorf("alice: exit %d, want 1", code)
		}
		wantLines(t, "alice", out, append(challenged, "<- 486 Busy Here")...)
		if c := bob.wait(t, 30*time.Second); c != 0 {
			t.Errorf("bob: exit %d", c)
		}
		wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:alice@example.test to sip:bob@"+private, "-> 486 Busy Here")
	})
}

// TestProxyRegisteredNATInDialog: a whole call with the phone behind the
// NAT. The ACK and the BYE follow the route set to bob's Contact, which is
// unreachable, so they must go over his flow too (flow tokens in
// Record-Route, RFC 5626 §5.3).
func TestProxyRegisteredNATInDialog(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	overTransports(t, func(t *testing.T, tr string) {
		s := regProxyServer(t, "")
		bob, _ := natPhone(t, s, tr, "--max-calls", "1")
		code, out := regCall(t, s, tr, "sip:bob@example.test", "--timeout", "10s")
		if code != 0 {
			t.Errorf("alice: exit %d", code)
		}
		wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 200 OK", "call established",
			"-> BYE", "<- 200 OK (BYE)", "call ended")...)
		bob.wait(t, 30*time.Second)
		bo := bob.output.String()
		wantLines(t, "bob", bo, "<- INVITE from sip:alice@example.test", "-> 200 OK", "call established",
			"<- BYE", "call ended: ua: remote hung up")
		noLine(t, "bob", bo, "no ACK")
	})
}

// overTransports runs f once over UDP and once over TCP, as parallel
// subtests.
func overTransports(t *testing.T, f func(t *testing.T, tr string)) {
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			f(t, tr)
		})
	}
}
