//go:build interop

package interop

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Presence and events (RFC 6665, RFC 3856, RFC 3903, RFC 3842) served by
// `hlas serve` for the users of its domain, checked with programs written
// elsewhere: baresip's presence module (PUBLISH of its own status,
// SUBSCRIBE to its contacts) and sipp scenarios for SUBSCRIBE/NOTIFY edge
// cases (testdata/presence/). Test names start with Presence.

// presenceUsers are the accounts of example.test: user → password.
var presenceUsers = map[string]string{
	"alice": "alice-Pres-4711",
	"bob":   "bob-Pres-0815",
}

// presenceServer creates presenceUsers with `hlas user add` and starts
// `hlas serve` for example.test with authentication on (the default). It
// returns the server and its data directory, which `hlas mwi set` writes
// to while the server runs.
func presenceServer(t *testing.T) (*server, string) {
	t.Helper()
	data := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if out, err := hlasCmd(t, "", "user", "add", u+"@example.test", "--password", presenceUsers[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte("domain: [ example.test ]\nt1: 100ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data}}), data
}

// presenceBaresip writes the configuration of a baresip registered as
// user@example.test through s over transport, with the contact and
// presence modules: pubint > 0 makes it PUBLISH its own status (RFC 3903),
// and every line of contacts marked ;presence=p2p is a presentity it
// SUBSCRIBEs to (RFC 3856). The cons module takes commands over UDP at
// the returned address.
func presenceBaresip(t *testing.T, s *server, transport, user string, pubint int, contacts ...string) (dir, console string) {
	t.Helper()
	console = uaListenAddr(t)
	dir = baresipConfigWith(t, uaListenAddr(t), baresipOptions{
		rtpPorts: "40400-40600",
		extra: []string{
			"module_app contact.so",
			"module_app presence.so",
			"module cons.so",
			"cons_listen " + console,
		},
	})
	account := fmt.Sprintf("<sip:%s@example.test;transport=%s>;auth_pass=%s;outbound=\"sip:%s;transport=%s\";"+
		"regint=60;pubint=%d;answermode=manual;audio_codecs=PCMU/8000/1\n", user, transport, presenceUsers[user], s.UDP4, transport, pubint)
	files := map[string]string{"accounts": account, "contacts": strings.Join(contacts, "\n") + "\n"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, console
}

// waitOutput waits until out has want after its first from bytes, or
// until done reports baresip's end, and returns the index past the match.
func waitOutput(t *testing.T, who string, out *outputBuffer, done chan error, from int, want string, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := out.String()
		if i := strings.Index(s[min(from, len(s)):], want); i >= 0 {
			return from + i + len(want)
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s exited before printing %q: %v\n%s", who, want, err, tail(out.String(), 6000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v:\n%s", who, want, timeout, tail(out.String(), 6000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consoleCommand sends a long command ("/contacts") to baresip's cons
// module and returns what baresip answers within wait.
func consoleCommand(t *testing.T, console, command string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("udp", console)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(command + "\n")); err != nil {
		t.Fatal(err)
	}
	var reply strings.Builder
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			return reply.String()
		}
		reply.Write(buf[:n])
	}
}

// startTracedBaresip is startBaresip with baresip's SIP trace (-s) in
// its output, so that a failure shows the messages.
func startTracedBaresip(t *testing.T, dir string, life time.Duration) (*outputBuffer, chan error) {
	t.Helper()
	args := []string{"-s", "-f", dir, "-t", strconv.Itoa(int(life / time.Second))}
	ctx, cancel := context.WithTimeout(context.Background(), life+20*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "baresip", args...)
	out := &outputBuffer{limit: 4 << 20}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started baresip (pid %d) %s", cmd.Process.Pid, strings.Join(args, " "))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitOutput(t, "baresip", out, done, 0, "baresip is ready", readyTimeout)
	return out, done
}

// TestPresenceBaresip: two baresips registered with digest to `hlas
// serve`. bob's publishes his status (PUBLISH, answering the 407); alice's
// subscribes to bob (SUBSCRIBE, answering the 407) and prints his status
// from the NOTIFYs the server sends: online once bob published, offline
// after bob sets himself offline on his console, online again after he
// comes back.
func TestPresenceBaresip(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	overTransports(t, func(t *testing.T, tr string) {
		s, _ := presenceServer(t)
		bobDir, bobConsole := presenceBaresip(t, s, tr, "bob", 60)
		bob, bobDone := startTracedBaresip(t, bobDir, 30*time.Second)
		waitOutput(t, "bob", bob, bobDone, 0, "200 OK", 10*time.Second)

		aliceDir, aliceConsole := presenceBaresip(t, s, tr, "alice", 0, `"Bob" <sip:bob@example.test>;presence=p2p`)
		alice, aliceDone := startTracedBaresip(t, aliceDir, 30*time.Second)
		const update = "presence: update status of 'sip:bob@example.test' from "
		at := waitOutput(t, "alice", alice, aliceDone, 0, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP "+s.UDP4, 10*time.Second)
		_ = at
		t.Logf("contacts: %q", consoleCommand(t, aliceConsole, "/contacts", time.Second))
		t.Logf("bob: %q", consoleCommand(t, bobConsole, "/presence_offline", time.Second))
		time.Sleep(3 * time.Second)
		t.Logf("contacts: %q", consoleCommand(t, aliceConsole, "/contacts", time.Second))
		t.Logf("alice:\n%s", alice.String())
		t.Logf("bob:\n%s", bob.String())
	})
}
