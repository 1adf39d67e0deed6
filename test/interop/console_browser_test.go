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
	"syscall"
	"testing"
	"time"
)

// The web console (api/console/, issue 16) in Debian's headless
// Chromium, driven by puppeteer-core (testdata/webrtc/console.mjs): the
// page is opened on the API listener of `hlas serve`, a person logs in
// with a token from `hlas api token add`, and the page must show what
// happens on the SIP side, read through the public API only: bob (`hlas
// ua answer --register`) registering, alice's call to him in progress
// (the accounting's calls gauge in /api/v1/stats), and the call's record
// once it ended (/api/v1/cdrs). Screenshots go to $HLAS_TEST_OUTPUT, or
// a directory under the system's temporary one; the test logs where.
// Test names start with Console.

// consoleCallTime is how long alice's call lasts: several of the page's
// two-second polls, so it sees the call in progress.
const consoleCallTime = 8 * time.Second

// TestConsoleBrowser: log in, see a phone register, a call appear and end.
func TestConsoleBrowser(t *testing.T) {
	t.Parallel() // waits on the browser and on timers, mostly
	dir, err := filepath.Abs(webrtcDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is required but not installed (%v); install Node.js 20 or later (Debian package nodejs)", err)
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is required (%v); install the Debian package chromium", chromiumPath, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "puppeteer-core", "package.json")); err != nil {
		t.Fatalf("puppeteer-core is not installed in %s (%v); run `npm ci --prefix test/interop/testdata/webrtc`", dir, err)
	}

	data := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if out, err := hlasCmd(t, "", "user", "add", u+"@example.test", "--password", regSubscribers[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	out, err := exec.Command(hlasBin, "api", "token", "add", "console", "--data", data).Output()
	token := strings.TrimSpace(string(out))
	if err != nil || len(token) != 43 {
		t.Fatalf("hlas api token add: %v, printed %q", err, out)
	}
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := fmt.Sprintf("domain: [ example.test ]\nt1: 100ms\napi: { enabled: true, listen: %q }\n", apiAddr)
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hlas output:\n%s", s.output.Tail(maxLoggedOutput))
		}
	})

	b := startConsoleBrowser(t, dir, "http://"+apiAddr+"/console/", token)
	// Nothing yet: no registration, no call.
	b.show(t, "#registrations-count", "(0)", true)
	b.show(t, "#calls-active", "0", true)
	b.screenshot(t, "logged-in")

	bob := regPhone(t, s, "udp", "bob", "--max-calls", "1")
	b.show(t, "#registrations", "bob@example.test", true)
	b.show(t, "#registrations-count", "(1)", true)

	alice := startUA(t, false, "call", "--user", "alice@example.test", "--password", regSubscribers["alice"],
		"--server", s.UDP4, "--transport", "udp", "--local", uaListenAddr(t), "--t1", "100ms",
		"--duration", consoleCallTime.String(), "--drain", "1s", "sip:bob@example.test")
	b.show(t, "#calls-active", "1", true)
	b.screenshot(t, "in-call")
	// In progress, the call has no record yet.
	b.show(t, "#cdrs", "bob@example.test", false)

	if code := alice.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("alice: exit %d\n%s", code, alice.output.String())
	}
	wantLines(t, "alice", alice.output.String(), "<- 200 OK", "call established", "-> BYE", "<- 200 OK (BYE)", "call ended")
	if code := bob.wait(t, 30*time.Second); code != 0 {
		t.Errorf("bob: exit %d", code)
	}
	b.show(t, "#cdrs", "alice@example.test", true)
	b.show(t, "#cdrs", "bob@example.test", true)
	b.show(t, "#cdrs", "answered", true)
	b.show(t, "#calls-active", "0", true)
	b.screenshot(t, "call-ended")
}

// consoleBrowser is console.mjs and its Chromium; it reads and stops
// like the WebRTC tests' driver.
type consoleBrowser struct{ *webrtcBrowser }

// startConsoleBrowser runs console.mjs on the page at url, and waits
// until it has loaded the page and logged in with token.
func startConsoleBrowser(t *testing.T, dir, url, token string) consoleBrowser {
	t.Helper()
	b := &webrtcBrowser{out: &outputBuffer{limit: 16 << 20}, userDataDir: t.TempDir(), done: make(chan struct{})}
	args := []string{"console.mjs", "--chromium", chromiumPath, "--user-data-dir", b.userDataDir,
		"--timeout", strconv.Itoa(int(webrtcStep / time.Millisecond)), "--url", url}
	// The token goes on the command line last, and is not logged.
	b.cmd = exec.Command("node", append(args, "--token", token)...)
	b.cmd.Dir = dir
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	b.cmd.Stderr = b.out
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started the console driver (pid %d): node %s --token ...", b.cmd.Process.Pid, strings.Join(args, " "))
	go b.read(stdout)
	t.Cleanup(func() { b.stop(t) })
	if ev := b.wait(t, "loaded", 1); ev.Status != 200 {
		t.Fatalf("GET %s: HTTP status %d", url, ev.Status)
	}
	b.wait(t, "loggedin", 1)
	t.Logf("%s (pid %d) logged in to %s", b.first("browser").Version, b.first("browser").PID, url)
	return consoleBrowser{b}
}

// show waits until the text of the page's element sel has (present) or
// lacks text.
func (b consoleBrowser) show(t *testing.T, sel, text string, present bool) {
	t.Helper()
	n, since := len(b.eventsOf("shown")), b.mark()
	b.command(t, map[string]string{"cmd": "wait", "selector": sel, "text": text, "present": strconv.FormatBool(present)})
	b.waitSince(t, "shown", n+1, since)
}

// screenshot saves the page as TestName-what.png in $HLAS_TEST_OUTPUT,
// or in hlas-console-TestName under the temporary directory.
func (b consoleBrowser) screenshot(t *testing.T, what string) {
	t.Helper()
	dir := os.Getenv("HLAS_TEST_OUTPUT")
	if dir == "" {
		top, _, _ := strings.Cut(t.Name(), "/")
		dir = filepath.Join(os.TempDir(), "hlas-console-"+fileSafe(top))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fileSafe(t.Name())+"-"+what+".png")
	n, since := len(b.eventsOf("screenshot")), b.mark()
	b.command(t, map[string]string{"cmd": "screenshot", "path": path})
	b.waitSince(t, "screenshot", n+1, since)
	t.Logf("screenshot: %s", path)
}
