//go:build interop

package interop

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
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
// (the accounting's calls gauge in /api/v1/stats, the active calls of
// /api/v1/calls), and the call's record once it ended (/api/v1/cdrs);
// and a person hanging the call up with the page's button (DELETE
// /api/v1/calls/{call_id}), refused for a read-only token. Screenshots go to $HLAS_TEST_OUTPUT, or
// a directory under the system's temporary one; the test logs where.
// Test names start with Console.

// consoleCallTime is how long alice's call lasts: several of the page's
// two-second polls, so it sees the call in progress.
const consoleCallTime = 8 * time.Second

// consoleHangupCallTime is how long alice's call would last if nobody
// hung it up: far beyond the test's steps, so its end is the page's doing.
const consoleHangupCallTime = 5 * time.Minute

// TestConsoleBrowser: log in, see a phone register, a call appear and end.
func TestConsoleBrowser(t *testing.T) {
	t.Parallel() // waits on the browser and on timers, mostly
	c := startConsoleServer(t)
	b := startConsoleBrowser(t, c.dir, c.url, c.token)
	// Nothing yet: no registration, no call.
	b.show(t, "#registrations-count", "(0)", true)
	b.show(t, "#calls-active", "0", true)
	b.screenshot(t, "logged-in")

	bob := regPhone(t, c.s, "udp", "bob", "--max-calls", "1")
	b.show(t, "#registrations", "bob@example.test", true)
	b.show(t, "#registrations-count", "(1)", true)

	alice := startUA(t, false, "call", "--user", "alice@example.test", "--password", regSubscribers["alice"],
		"--server", c.s.UDP4, "--transport", "udp", "--local", uaListenAddr(t), "--t1", "100ms",
		"--duration", consoleCallTime.String(), "--drain", "1s", "sip:bob@example.test")
	b.show(t, "#calls-active", "1", true)
	b.show(t, "#active-calls", "sip:bob@example.test", true)
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
	b.show(t, "#active-calls", "sip:bob@example.test", false)
	b.screenshot(t, "call-ended")
}

// TestConsoleHangup: alice calls bob (two `hlas ua`) through `hlas
// serve`; the page lists the call, answered, under active calls. Logged
// in with a read-only token, its Hang up button is refused (403) and
// says so, and the call goes on; logged in again with a full token, the
// button ends the call: each phone gets a BYE from the server, the row
// goes, and the call's record says the API ended it.
func TestConsoleHangup(t *testing.T) {
	t.Parallel() // waits on the browser and on timers, mostly
	c := startConsoleServer(t)
	b := startConsoleBrowser(t, c.dir, c.url, c.roToken)
	bob := regPhone(t, c.s, "udp", "bob", "--max-calls", "1")
	alice := startUA(t, false, "call", "--user", "alice@example.test", "--password", regSubscribers["alice"],
		"--server", c.s.UDP4, "--transport", "udp", "--local", uaListenAddr(t), "--t1", "100ms",
		"--duration", consoleHangupCallTime.String(), "--drain", "1s", "sip:bob@example.test")

	// The call as the API has it, to find its row in the page.
	var id string
	if !waitFor(webrtcStep, func() bool {
		var l struct {
			Items []struct {
				CallID string `json:"call_id"`
				State  string `json:"state"`
			} `json:"items"`
		}
		if c.apiGet(t, "/api/v1/calls", &l) != 200 || len(l.Items) != 1 || l.Items[0].State != "confirmed" || l.Items[0].CallID == "" {
			return false
		}
		id = l.Items[0].CallID
		return true
	}) {
		t.Fatalf("GET /api/v1/calls: no confirmed call within %v; alice:\n%s", webrtcStep, alice.output.String())
	}
	row := "#active-calls tr[data-call-id=" + cssString(id) + "]"
	b.show(t, row, "sip:alice@example.test", true)
	b.show(t, row, "sip:bob@example.test", true)
	b.show(t, row, "confirmed", true)
	b.show(t, "#calls-count", "1", true)
	b.screenshot(t, "in-call")

	// Read-only: refused, said, and the buttons disabled; the call goes on.
	label := b.click(t, "#active-calls button[data-testid=hangup]", "data-call-id", id)
	if !strings.Contains(label, "alice@example.test") || !strings.Contains(label, "bob@example.test") {
		t.Errorf("the Hang up button's label %q does not name the call", label)
	}
	b.show(t, "#calls-result", "403", true)
	b.show(t, "#calls-result", "read-only", true)
	b.show(t, row+" button[disabled]", "Hang up", true)
	b.screenshot(t, "read-only-refused")
	var call struct{ State string }
	if code := c.apiGet(t, "/api/v1/calls/"+url.PathEscape(id), &call); code != 200 || call.State != "confirmed" {
		t.Fatalf("after the refused hang-up, GET the call = %d, state %q", code, call.State)
	}
	noLine(t, "alice", alice.output.String(), "<- BYE", "call ended")

	// A full token: the button is back, and ends the call.
	b.login(t, c.token)
	b.show(t, row, "confirmed", true)
	b.show(t, row+" button:not([disabled])", "Hang up", true)
	b.show(t, "#calls-result", "read-only", false)
	b.click(t, "#active-calls button[data-testid=hangup]", "data-call-id", id)
	b.show(t, "#calls-result", "bye (a BYE went to each phone)", true)

	if code := alice.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("alice: exit %d\n%s", code, alice.output.String())
	}
	out := alice.output.String()
	wantLines(t, "alice", out, "<- 200 OK", "call established", "<- BYE", "call ended by the peer")
	noLine(t, "alice", out, "-> BYE")
	if code := bob.wait(t, 30*time.Second); code != 0 {
		t.Errorf("bob: exit %d", code)
	}
	out = bob.output.String()
	wantLines(t, "bob", out, "-> 200 OK", "call established", "<- BYE", "call ended")
	noLine(t, "bob", out, "-> BYE")

	b.show(t, "#active-calls", "sip:alice@example.test", false)
	b.show(t, "#calls-count", "0", true)
	cdr := "#cdrs tr[data-call-id=" + cssString(id) + "]"
	b.show(t, cdr, "answered", true)
	b.show(t, cdr, "proxy", true)
	b.show(t, cdr, "api", true)
	b.screenshot(t, "hung-up")
}

// consoleServer is `hlas serve` with the API on, alice and bob as
// subscribers, and two API tokens.
type consoleServer struct {
	s   *server
	dir string // the drivers' directory, with node_modules
	url string // the console's page
	api string // "http://127.0.0.1:port"
	// token may write; roToken only read.
	token, roToken string
}

// startConsoleServer checks the browser's tools are there and starts the
// server.
func startConsoleServer(t *testing.T) consoleServer {
	t.Helper()
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
	token := func(args ...string) string {
		out, err := exec.Command(hlasBin, append([]string{"api", "token", "add"}, append(args, "--data", data)...)...).Output()
		tok := strings.TrimSpace(string(out))
		if err != nil || len(tok) != 43 {
			t.Fatalf("hlas api token add %v: %v, printed %q", args, err, out)
		}
		return tok
	}
	c := consoleServer{dir: dir, token: token("console"), roToken: token("viewer", "--read-only")}
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
	c.s = startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hlas output:\n%s", c.s.output.Tail(maxLoggedOutput))
		}
	})
	c.api = "http://" + apiAddr
	c.url = c.api + "/console/"
	return c
}

// apiGet reads path from the API with the full token into v, and returns
// the status (0 when the request failed).
func (c consoleServer) apiGet(t *testing.T, path string, v any) int {
	t.Helper()
	req, err := http.NewRequest("GET", c.api+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	cl := http.Client{Timeout: 10 * time.Second}
	res, err := cl.Do(req)
	if err != nil {
		t.Logf("GET %s: %v", path, err)
		return 0
	}
	defer res.Body.Close()
	if res.StatusCode == 200 {
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			t.Errorf("GET %s: %v", path, err)
		}
	}
	return res.StatusCode
}

// cssString quotes s as a CSS string, for an attribute selector.
func cssString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\a `).Replace(s) + `"`
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

// click clicks, with the mouse, the first element of sel whose attribute
// attr is value, and returns its accessible label.
func (b consoleBrowser) click(t *testing.T, sel, attr, value string) string {
	t.Helper()
	n, since := len(b.eventsOf("clicked")), b.mark()
	b.command(t, map[string]string{"cmd": "click", "selector": sel, "attr": attr, "value": value})
	return b.waitSince(t, "clicked", n+1, since).Label
}

// login logs the page out and in again with token.
func (b consoleBrowser) login(t *testing.T, token string) {
	t.Helper()
	n, since := len(b.eventsOf("loggedin")), b.mark()
	b.command(t, map[string]string{"cmd": "login", "token": token})
	b.waitSince(t, "loggedin", n+1, since)
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
