//go:build interop

package interop

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Linphone (linphonec, the console client of liblinphone) registered with
// a digest password to `hlas serve` calls and is called by registered
// `hlas ua` phones through the proxy, over UDP and TCP: answer and BYE,
// auto-answer, busy (486), cancel (487) and forking. Test names start with
// ProxyLinphone.
//
// linphonec runs headless: no sound card ("soundcard use files": WAV files
// instead of ALSA), no video, a private HOME, and a configuration file
// (testdata/linphonerc.tmpl) naming the proxy as registrar and outbound
// proxy. The test drives it through its stdin commands (call, terminate,
// status register, quit) and reads what it prints.

// linphoneDebianPackage provides /usr/bin/linphonec.
const linphoneDebianPackage = "linphone-cli"

// linphoneWait bounds each wait for something linphonec prints.
const linphoneWait = 20 * time.Second

// linSubscribers are the accounts of example.test in these tests: those of
// the other proxy tests (alice, bob for `hlas ua`) and frank, linphone.
var linSubscribers = func() map[string]string {
	m := map[string]string{"frank": "frank-Pw-5151"}
	for u, p := range regSubscribers {
		m[u] = p
	}
	return m
}()

// linServer is `hlas serve` for example.test with its data directory.
type linServer struct {
	*server
	data string
}

// linProxyServer creates the subscribers with `hlas user add` and starts
// `hlas serve` for example.test with authentication on (the default) and
// the default routing.
func linProxyServer(t *testing.T) *linServer {
	t.Helper()
	data := t.TempDir()
	users := make([]string, 0, len(linSubscribers))
	for u := range linSubscribers {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if out, err := hlasCmd(t, "", "user", "add", u+"@example.test", "--password", linSubscribers[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte("domain: [ example.test ]\nt1: 100ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data}})
	return &linServer{server: s, data: data}
}

// linphone is one running linphonec.
type linphone struct {
	user   string
	port   int    // SIP port (UDP or TCP)
	logf   string // liblinphone's log: every SIP message sent and received
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *outputBuffer
	exited chan struct{}
	err    error
}

// requireLinphone fails the test (it does not skip) when linphonec is not
// installed.
func requireLinphone(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("linphonec"); err != nil {
		t.Fatalf("linphonec is required but not installed (%v); install the Debian package %q, e.g. by running `bash .ci/run`",
			err, linphoneDebianPackage)
	}
}

// startLinphone runs linphonec registered as user@example.test (password
// from linSubscribers) over transport (udp or tcp) with the server as
// registrar and outbound proxy, answering calls automatically when
// autoAnswer is set, and returns once the registration succeeded and the
// binding is in the registrar's store.
func startLinphone(t *testing.T, s *linServer, transport, user string, autoAnswer bool) *linphone {
	t.Helper()
	requireLinphone(t)
	home := t.TempDir()
	// liblinphone keeps its call log and chat database here; without the
	// directory it complains on every start.
	if err := os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	sipPort, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	rtpPort, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	udpPort, tcpPort := sipPort, 0 // 0 disables a transport
	if transport == "tcp" {
		udpPort, tcpPort = 0, sipPort
	}
	tmpl, err := os.ReadFile(filepath.Join("testdata", "linphonerc.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	rc := strings.NewReplacer(
		"@UDP_PORT@", fmt.Sprint(udpPort),
		"@TCP_PORT@", fmt.Sprint(tcpPort),
		"@RTP_PORT@", fmt.Sprint(rtpPort),
		"@PROXY@", fmt.Sprintf("<sip:%s;transport=%s;lr>", s.UDP4, transport),
		"@USER@", user,
		"@PASSWORD@", linSubscribers[user],
	).Replace(string(tmpl))
	rcPath := filepath.Join(home, "linphonerc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}

	l := &linphone{user: user, port: sipPort, logf: filepath.Join(home, "linphone.log"),
		out: &outputBuffer{limit: 4 << 20}, exited: make(chan struct{})}
	// -d 3 logs the SIP messages (belle-sip) to the -l file; stdout keeps
	// linphonec's own lines.
	args := []string{"-c", rcPath, "-d", "3", "-l", l.logf}
	if autoAnswer {
		args = append(args, "-a")
	}
	l.cmd = exec.Command("linphonec", args...)
	l.cmd.Env = append(os.Environ(), "HOME="+home)
	l.cmd.Dir = home
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started linphonec (pid %d) %s as %s@example.test over %s on port %d",
		l.cmd.Process.Pid, strings.Join(args, " "), user, transport, sipPort)
	go func() {
		l.err = l.cmd.Wait()
		close(l.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-l.exited:
		default:
			l.cmd.Process.Kill()
			<-l.exited
		}
		if t.Failed() {
			t.Logf("linphonec (%s) output:\n%s", user, tail(l.out.String(), 8000))
			t.Logf("linphonec (%s) log:\n%s", user, tail(l.log(t), 16000))
		}
	})

	// WAV files instead of the sound card: what linphone sends and where
	// what it receives goes.
	l.send(t, "soundcard use files")
	l.waitFor(t, "Using wav files instead of soundcard.")
	l.send(t, "play /usr/share/sounds/linphone/hello8000.wav")
	l.send(t, "record "+filepath.Join(home, "received.wav"))

	// Registered: linphonec says so, and the registrar has the binding.
	want := "registered, identity=sip:" + user + "@example.test"
	deadline := time.Now().Add(linphoneWait)
	for !strings.Contains(l.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("linphonec did not register within %v:\n%s", linphoneWait, tail(l.out.String(), 8000))
		}
		select {
		case <-l.exited:
			t.Fatalf("linphonec exited before registering: %v\n%s", l.err, tail(l.out.String(), 8000))
		case <-time.After(250 * time.Millisecond):
		}
		l.send(t, "status register")
	}
	out, err := hlasCmd(t, "", "reg", "list", user+"@example.test", "--data", s.data)
	if err != nil {
		t.Fatalf("hlas reg list: %v\n%s", err, out)
	}
	// Over UDP the Contact names the listening port; over TCP linphone
	// (belle-sip) names the local port of its connection to the proxy,
	// so only that flow reaches it.
	contact := fmt.Sprintf("<sip:%s@127.0.0.1:%d;transport=udp>", user, sipPort)
	if transport == "tcp" {
		contact = fmt.Sprintf("<sip:%s@127.0.0.1:", user)
	}
	if !strings.Contains(out, contact) || !strings.Contains(out, "Linphonec/") || !strings.Contains(out, strings.ToUpper(transport)) {
		t.Fatalf("no binding %s of linphonec in the registrar:\n%s", contact, out)
	}
	// The REGISTER was challenged (401) and then accepted.
	l.wantLog(t, "REGISTER sip:example.test SIP/2.0", "SIP/2.0 401 Unauthorized",
		`WWW-Authenticate: Digest realm="example.test"`, "REGISTER sip:example.test SIP/2.0",
		"Authorization:", "Digest realm=\"example.test\"", "algorithm=SHA-256", `username="`+user+`"`,
		"SIP/2.0 200 OK", "CSeq: 21 REGISTER")
	wantLines(t, "hlas serve", s.output.String(),
		"msg=challenge feature=auth method=REGISTER aor="+user+"@example.test why=no_credentials",
		"msg=authenticated feature=auth method=REGISTER aor="+user+"@example.test")
	return l
}

// log returns what liblinphone has logged so far.
func (l *linphone) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(l.logf)
	if err != nil {
		t.Errorf("linphonec log: %v", err)
	}
	return string(b)
}

// wantLog fails the test unless liblinphone's log has every one of want,
// in order (the log itself is shown when the test fails).
func (l *linphone) wantLog(t *testing.T, want ...string) {
	t.Helper()
	rest := l.log(t)
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("linphonec (%s) log: no %q (in order) among %q", l.user, w, want)
			return
		}
		rest = rest[i+len(w):]
	}
}

// send writes a command line to linphonec's stdin.
func (l *linphone) send(t *testing.T, command string) {
	t.Helper()
	if _, err := io.WriteString(l.stdin, command+"\n"); err != nil {
		t.Fatalf("linphonec: send %q: %v\n%s", command, err, tail(l.out.String(), 8000))
	}
}

// waitFor waits until linphonec has printed want, failing the test after
// linphoneWait or when linphonec exits first.
func (l *linphone) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(linphoneWait)
	for !strings.Contains(l.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("linphonec did not print %q within %v:\n%s", want, linphoneWait, tail(l.out.String(), 8000))
		}
		select {
		case <-l.exited:
			t.Fatalf("linphonec exited before printing %q: %v\n%s", want, l.err, tail(l.out.String(), 8000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// quit ends linphonec with its quit command and requires exit status 0.
func (l *linphone) quit(t *testing.T) string {
	t.Helper()
	l.send(t, "quit")
	l.stdin.Close()
	select {
	case <-l.exited:
		if l.err != nil {
			t.Errorf("linphonec exited: %v", l.err)
		}
	case <-time.After(linphoneWait):
		t.Errorf("linphonec still running %v after quit; killing it", linphoneWait)
		l.cmd.Process.Kill()
		<-l.exited
	}
	out := l.out.String()
	t.Logf("linphonec (%s) output:\n%s", l.user, tail(out, 4000))
	return out
}

// TestProxyLinphone: linphonec and `hlas ua` phones, all registered with
// digest passwords, call each other through the proxy.
func TestProxyLinphone(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	requireLinphone(t)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Run("linphone calls hlas ua, hangs up", func(t *testing.T) {
				s := linProxyServer(t)
				bob := regPhone(t, s.server, tr, "bob", "--max-calls", "1")
				lin := startLinphone(t, s, tr, "frank", false)
				lin.send(t, "call sip:bob@example.test")
				lin.waitFor(t, "Media streams established with sip:bob@example.test")
				time.Sleep(500 * time.Millisecond) // some RTP both ways
				lin.send(t, "terminate")
				lin.waitFor(t, "Call 1 with sip:bob@example.test ended")
				if c := bob.wait(t, 30*time.Second); c != 0 {
					t.Errorf("bob: exit %d", c)
				}
				lo := lin.quit(t)
				lin.wantLog(t, "INVITE sip:bob@example.test SIP/2.0", "SIP/2.0 407 Proxy Authentication Required",
					"INVITE sip:bob@example.test SIP/2.0", "Proxy-Authorization:", "SIP/2.0 180 Ringing",
					"SIP/2.0 200 OK", "Record-Route:", "ACK sip:bob@127.0.0.1:", "BYE sip:bob@127.0.0.1:", "SIP/2.0 200 OK")
				wantLines(t, "linphonec", lo, "Establishing call id to sip:bob@example.test, assigned id 1",
					"Call 1 to sip:bob@example.test ringing.", "Call 1 with sip:bob@example.test connected.",
					"Media streams established with sip:bob@example.test for call 1 (audio).",
					"Call 1 with sip:bob@example.test ended (No error).")
				wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:frank@example.test to sip:bob@127.0.0.1:",
					"-> 180 Ringing", "-> 200 OK", "call established", "<- BYE", "call ended: ua: remote hung up")
				// linphone answered the proxy's 407 itself.
				wantLines(t, "hlas serve", s.output.String(),
					"msg=challenge feature=auth method=INVITE aor=frank@example.test",
					"msg=authenticated feature=auth method=INVITE aor=frank@example.test")
			})
			t.Run("hlas ua calls linphone, auto-answer, caller hangs up", func(t *testing.T) {
				s := linProxyServer(t)
				lin := startLinphone(t, s, tr, "frank", true)
				code, out := regCall(t, s.server, tr, "sip:frank@example.test", "--duration", "1s")
				if code != 0 {
					t.Errorf("alice: exit %d", code)
				}
				// linphone's reason phrases: "200 Ok".
				wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 200 Ok", "call established",
					"-> BYE", "<- 200 Ok (BYE)", "call ended")...)
				lin.waitFor(t, "Call 1 with sip:alice@example.test ended")
				lo := lin.quit(t)
				lin.wantLog(t, "INVITE sip:frank@127.0.0.1:", "Record-Route:", "SIP/2.0 180 Ringing", "SIP/2.0 200 Ok",
					"ACK sip:frank@127.0.0.1:", "BYE sip:frank@127.0.0.1:", "SIP/2.0 200 Ok")
				wantLines(t, "linphonec", lo, "Receiving new incoming call from sip:alice@example.test, assigned id 1",
					"auto answering", "Call 1 with sip:alice@example.test connected.",
					"Media streams established with sip:alice@example.test for call 1 (audio).",
					"Call 1 with sip:alice@example.test ended (No error).")
			})
			t.Run("linphone calls a busy hlas ua: 486", func(t *testing.T) {
				s := linProxyServer(t)
				bob := regPhone(t, s.server, tr, "bob", "--code", "486", "--max-calls", "1")
				lin := startLinphone(t, s, tr, "frank", false)
				lin.send(t, "call sip:bob@example.test")
				lin.waitFor(t, "Call 1 with sip:bob@example.test")
				if c := bob.wait(t, 30*time.Second); c != 0 {
					t.Errorf("bob: exit %d", c)
				}
				lo := lin.quit(t)
				wantLines(t, "linphonec", lo, "Establishing call id to sip:bob@example.test, assigned id 1",
					"Call 1 with sip:bob@example.test error.")
				noLine(t, "linphonec", lo, "connected.")
				lin.wantLog(t, "SIP/2.0 407 Proxy Authentication Required", "Proxy-Authorization:",
					"SIP/2.0 486 Busy Here", "ACK sip:bob@example.test SIP/2.0")
				wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:frank@example.test", "-> 486 Busy Here")
			})
			t.Run("linphone cancels while hlas ua rings: 487", func(t *testing.T) {
				s := linProxyServer(t)
				bob := regPhone(t, s.server, tr, "bob", "--ring", "30s", "--max-calls", "1")
				lin := startLinphone(t, s, tr, "frank", false)
				lin.send(t, "call sip:bob@example.test")
				lin.waitFor(t, "Call 1 to sip:bob@example.test ringing.")
				lin.send(t, "terminate")
				lin.waitFor(t, "Call 1 with sip:bob@example.test ended")
				if c := bob.wait(t, 30*time.Second); c != 0 {
					t.Errorf("bob: exit %d", c)
				}
				lo := lin.quit(t)
				noLine(t, "linphonec", lo, "connected.")
				lin.wantLog(t, "SIP/2.0 180 Ringing", "CANCEL sip:bob@example.test SIP/2.0", "SIP/2.0 487 Request Terminated")
				wantLines(t, "bob", bob.output.String(), "<- INVITE from sip:frank@example.test", "-> 180 Ringing",
					"call ended: ua: call cancelled")
			})
			t.Run("hlas ua gives up while linphone rings: 487", func(t *testing.T) {
				s := linProxyServer(t)
				lin := startLinphone(t, s, tr, "frank", false)
				code, out := regCall(t, s.server, tr, "sip:frank@example.test", "--timeout", "2s")
				if code != 1 {
					t.Errorf("alice: exit %d, want 1", code)
				}
				wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 487 Request terminated",
					"timeout after 2s: cancelled")...)
				lin.waitFor(t, "Call 1 with sip:alice@example.test ended")
				lo := lin.quit(t)
				lin.wantLog(t, "INVITE sip:frank@127.0.0.1:", "SIP/2.0 180 Ringing", "CANCEL sip:frank@127.0.0.1:",
					"SIP/2.0 487 Request terminated")
				wantLines(t, "linphonec", lo, "Receiving new incoming call from sip:alice@example.test, assigned id 1",
					"Call 1 with sip:alice@example.test ended (Not answered).")
				noLine(t, "linphonec", lo, "connected.")
			})
			t.Run("hlas ua calls linphone, linphone declines", func(t *testing.T) {
				s := linProxyServer(t)
				lin := startLinphone(t, s, tr, "frank", false)
				p := startUA(t, false, "call", "--user", "alice@example.test", "--password", linSubscribers["alice"],
					"--server", s.UDP4, "--transport", tr, "--local", uaListenAddr(t),
					"--t1", "100ms", "--drain", "1s", "sip:frank@example.test")
				lin.waitFor(t, "Receiving new incoming call from")
				lin.send(t, "terminate")
				if code := p.wait(t, 30*time.Second); code != 1 {
					t.Errorf("alice: exit %d, want 1", code)
				}
				lin.waitFor(t, "Call 1 with sip:alice@example.test ended (Call declined).")
				lin.quit(t)
				lin.wantLog(t, "INVITE sip:frank@127.0.0.1:", "SIP/2.0 180 Ringing", "SIP/2.0 603 Decline")
				out := p.output.String()
				wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 603 Decline")...)
				noLine(t, "alice", out, "call established")
			})
			t.Run("forking: linphone answers, the other phone is cancelled", func(t *testing.T) {
				s := linProxyServer(t)
				// bob has two phones: an `hlas ua` desk phone that only
				// rings and linphone, answering at once.
				desk := regPhone(t, s.server, tr, "bob", "--ring", "30s", "--max-calls", "1")
				lin := startLinphone(t, s, tr, "bob", true)
				code, out := regCall(t, s.server, tr, "sip:bob@example.test", "--duration", "1s")
				if code != 0 {
					t.Errorf("alice: exit %d", code)
				}
				wantLines(t, "alice", out, append(challenged, "<- 180 Ringing", "<- 200 Ok", "call established", "-> BYE", "<- 200 Ok (BYE)")...)
				if c := desk.wait(t, 30*time.Second); c != 0 {
					t.Errorf("desk: exit %d", c)
				}
				wantLines(t, "desk", desk.output.String(), "<- INVITE from sip:alice@example.test", "-> 180 Ringing",
					"call ended: ua: call cancelled")
				noLine(t, "desk", desk.output.String(), "call established")
				lin.waitFor(t, "Call 1 with sip:alice@example.test ended")
				lo := lin.quit(t)
				lin.wantLog(t, "INVITE sip:bob@127.0.0.1:", "SIP/2.0 200 Ok", "BYE sip:bob@127.0.0.1:")
				wantLines(t, "linphonec", lo, "Receiving new incoming call from sip:alice@example.test, assigned id 1",
					"auto answering", "Call 1 with sip:alice@example.test connected.",
					"Media streams established with sip:alice@example.test for call 1 (audio).",
					"Call 1 with sip:alice@example.test ended (No error).")
			})
		})
	}
}
