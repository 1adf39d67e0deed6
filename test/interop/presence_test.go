//go:build interop

package interop

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
// `hlas serve` for example.test with authentication on (the default) and
// the YAML lines extra. It returns the server and its data directory,
// which `hlas mwi set` writes to while the server runs.
func presenceServer(t *testing.T, extra ...string) (*server, string) {
	t.Helper()
	data := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if out, err := hlasCmd(t, "", "user", "add", u+"@example.test", "--password", presenceUsers[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte("domain: [ example.test ]\nt1: 100ms\n"+strings.Join(extra, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data}}), data
}

// presenceBaresip writes the configuration of a baresip as
// user@example.test with s as outbound proxy over transport, registering
// every regint seconds (0: never), with the contact and presence modules:
// pubint > 0 makes it PUBLISH its own status (RFC 3903),
// and every line of contacts marked ;presence=p2p is a presentity it
// SUBSCRIBEs to (RFC 3856). The cons module takes commands over UDP at
// the returned address.
func presenceBaresip(t *testing.T, s *server, transport, user string, regint, pubint int, contacts ...string) (dir, console string) {
	t.Helper()
	console = uaListenAddr(t)
	dir = baresipConfigWith(t, baresipListenAddr(t), baresipOptions{
		rtpPorts: "40400-40600",
		extra: []string{
			"module_app contact.so",
			"module_app presence.so",
			"module cons.so",
			"cons_listen " + console,
		},
	})
	account := fmt.Sprintf("<sip:%s@example.test;transport=%s>;auth_pass=%s;outbound=\"sip:%s;transport=%s\";"+
		"regint=%d;pubint=%d;answermode=manual;audio_codecs=PCMU/8000/1\n", user, transport, presenceUsers[user], s.UDP4, transport, regint, pubint)
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
	from = max(from, 0)
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
// its output, which a failing test shows, as who.
func startTracedBaresip(t *testing.T, who, dir string, life time.Duration) (*outputBuffer, chan error) {
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
	t.Logf("started baresip (pid %d) for %s: %s", cmd.Process.Pid, who, strings.Join(args, " "))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's baresip output:\n%s", who, tail(out.String(), 24000))
		}
	})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitOutput(t, who, out, done, 0, "baresip is ready", readyTimeout)
	return out, done
}

// ansi matches the colour escapes of baresip's console output.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// waitContact asks alice's baresip for its contact list until bob's line
// shows status ("Online", "Offline"), and fails the test after timeout.
func waitContact(t *testing.T, console, status string, timeout time.Duration) {
	t.Helper()
	want := status + " Bob <sip:bob@example.test>"
	deadline := time.Now().Add(timeout)
	for {
		reply := ansi.ReplaceAllString(consoleCommand(t, console, "/contacts", 300*time.Millisecond), "")
		if strings.Contains(reply, want) {
			t.Logf("alice sees bob %s", status)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's contacts do not show %q within %v; last answer:\n%s", want, timeout, reply)
		}
	}
}

// TestPresenceBaresip: two baresips, over UDP and over TCP. bob's
// publishes his status (PUBLISH, answering the 407; RFC 3903); alice's,
// registered, subscribes to bob (SUBSCRIBE, answering the 407; RFC 3856)
// and shows his status in its contact list from the NOTIFYs the server
// sends: offline while bob has published nothing valid, online once he
// sets himself online on his console, offline, online again; still online
// after his publication's first lifetime (he refreshes it, without a body,
// RFC 3903 §4.2); and offline once he has quit and his publication has
// expired.
//
// bob does not register (regint=0). baresip 1.0.0 publishes from a timer
// at start and again when a registration succeeds, and if the second
// goes out before the first is answered both lack SIP-If-Match: two
// publications, of which it then modifies only the last, while the other
// stays open until it expires (seen when the server answers slowly, as
// under -race). Unregistered, its status stays unknown until the console
// sets it: the timer's PUBLISH says <basic>unknown</basic>, which the
// server refuses with 400 (RFC 3863 allows open and closed only), and
// the console's PUBLISH creates the one publication. Unregistered, it
// also quits as soon as it has sent its removing PUBLISH (Expires: 0),
// before it can answer the 407, so the publication ends by expiring:
// its lifetime is 10 s (pubint), which the server allows here
// (min_expires).
func TestPresenceBaresip(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	overTransports(t, func(t *testing.T, tr string) {
		s, _ := presenceServer(t, "events:", "  publish:", "    min_expires: 10s")
		bobDir, bobConsole := presenceBaresip(t, s, tr, "bob", 0, 10)
		bob, bobDone := startTracedBaresip(t, "bob", bobDir, 90*time.Second)
		// NOTIFYs of one subscription may be spaced by the server's minimum
		// interval (RFC 6665 §4.1.2.1 rate limiting), 5 s by default.
		const timeout = 20 * time.Second
		at := waitOutput(t, "bob", bob, bobDone, 0, "<basic>unknown</basic>", timeout)
		at = waitOutput(t, "bob", bob, bobDone, at, "SIP/2.0 407 Proxy Authentication Required", timeout)
		at = waitOutput(t, "bob", bob, bobDone, at, "<basic>unknown</basic>", timeout)
		waitOutput(t, "bob", bob, bobDone, at, "SIP/2.0 400 ", timeout)

		aliceDir, aliceConsole := presenceBaresip(t, s, tr, "alice", 60, 0, `"Bob" <sip:bob@example.test>;presence=p2p`)
		alice, aliceDone := startTracedBaresip(t, "alice", aliceDir, 90*time.Second)
		waitContact(t, aliceConsole, "Offline", timeout)

		for _, step := range []struct{ command, status string }{
			{"/presence_online", "Online"}, {"/presence_offline", "Offline"}, {"/presence_online", "Online"},
		} {
			consoleCommand(t, bobConsole, step.command, 100*time.Millisecond)
			waitContact(t, aliceConsole, step.status, timeout)
		}
		// One publication: the first accepted PUBLISH, then modifications
		// of it (RFC 3903 §4.4).
		wantLines(t, "bob", bob.String(), "<basic>open</basic>", "SIP/2.0 200 OK", "SIP-ETag: ",
			"SIP-If-Match: ", "<basic>closed</basic>", "SIP/2.0 200 OK", "SIP-ETag: ",
			"SIP-If-Match: ", "<basic>open</basic>", "SIP/2.0 200 OK", "SIP-ETag: ")

		// A refresh: SIP-If-Match and no body, answered with a new tag.
		lastOpen := strings.LastIndex(bob.String(), "<basic>open</basic>")
		refresh := regexp.MustCompile(`SIP-If-Match: \S+\r?\nContent-Length: 0\r?\n`)
		deadline := time.Now().Add(timeout)
		for refresh.FindStringIndex(bob.String()[lastOpen:]) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("bob did not refresh his publication within %v:\n%s", timeout, tail(bob.String(), 6000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		at = lastOpen + refresh.FindStringIndex(bob.String()[lastOpen:])[1]
		waitOutput(t, "bob", bob, bobDone, at, "SIP-ETag: ", timeout)
		if n := strings.Count(bob.String(), "SIP-ETag: "); n < 4 {
			t.Errorf("bob got %d entity tags, want 4 or more (three changes, refreshes)", n)
		}
		// Past the lifetime of the last change, the refreshed publication
		// still stands.
		time.Sleep(4 * time.Second) // refreshed at 9 s, so 13 s after the change; swept every second
		waitContact(t, aliceConsole, "Online", timeout)
		if strings.Count(alice.String(), "<basic>") != 4 {
			t.Errorf("alice got other than 4 presence documents (closed, open, closed, open):\n%s", tail(alice.String(), 8000))
		}

		consoleCommand(t, bobConsole, "/quit", 100*time.Millisecond)
		select {
		case err := <-bobDone:
			if err != nil {
				t.Errorf("bob's baresip: %v", err)
			}
		case <-time.After(timeout):
			t.Fatalf("bob's baresip did not quit:\n%s", tail(bob.String(), 4000))
		}
		wantLines(t, "bob", bob.String()[at:], "PUBLISH sip:bob@example.test", "Expires: 0", "SIP-If-Match: ")
		waitContact(t, aliceConsole, "Offline", 30*time.Second)

		// What alice got: NOTIFYs of bob's presence from the server over
		// the transport, closed, open, closed, open and closed.
		wantLines(t, "alice", alice.String(), "SUBSCRIBE sip:bob@example.test", "407 Proxy Authentication Required",
			"SUBSCRIBE sip:bob@example.test", "Proxy-Authorization: Digest", "SIP/2.0 200 OK",
			strings.ToUpper(tr)+" "+s.UDP4+" -> ", "NOTIFY sip:alice", "Event: presence", "<basic>closed</basic>",
			"NOTIFY sip:alice", "<basic>open</basic>",
			"NOTIFY sip:alice", "<basic>closed</basic>",
			"NOTIFY sip:alice", "<basic>open</basic>",
			"NOTIFY sip:alice", "<basic>closed</basic>")
		consoleCommand(t, aliceConsole, "/quit", 100*time.Millisecond)
		select {
		case err := <-aliceDone:
			if err != nil {
				t.Errorf("alice's baresip: %v", err)
			}
		case <-time.After(timeout):
			t.Errorf("alice's baresip did not quit:\n%s", tail(alice.String(), 4000))
		}
	})
}

// waitFile waits until the file at path has every string of want, in
// order, or until sipp ends or timeout passes.
func waitFile(t *testing.T, path string, run *sippRun, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		rest, found := string(b), true
		for _, w := range want {
			i := strings.Index(rest, w)
			if i < 0 {
				found = false
				break
			}
			rest = rest[i+len(w):]
		}
		if found {
			return
		}
		select {
		case err := <-run.done:
			run.done <- err // for run.wait
			t.Fatalf("sipp exited before its trace had %q: %v\n%s\ntrace:\n%s", want, err, tail(run.out.String(), 4000), tail(string(b), 6000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipp's trace has no %q within %v:\n%s", want, timeout, tail(string(b), 6000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPresenceSubscribeMWI: sipp subscribes, with digest, to alice's
// message summary (testdata/presence/mwi_subscribe.xml): 200 and a first
// NOTIFY saying nothing waits; `hlas mwi set` while the server runs brings
// a NOTIFY saying 2 new and 1 old message wait; unsubscribing (Expires: 0)
// gets 200 and a last NOTIFY with Subscription-State: terminated.
func TestPresenceSubscribeMWI(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	for _, tc := range uaTransports {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, data := presenceServer(t)
			trace := filepath.Join(t.TempDir(), "messages.log")
			run, _ := startSipp(t, "127.0.0.1", "-sf", filepath.Join("presence", "mwi_subscribe.xml"),
				"-t", tc.sipp, "-set", "user", "alice", "-au", "alice", "-ap", presenceUsers["alice"],
				"-m", "1", "-timeout", "40s", "-timeout_error", "-trace_msg", "-message_file", trace, s.UDP4)
			// The first NOTIFY, answered.
			waitFile(t, trace, run, 20*time.Second, "NOTIFY sip:alice@", "Messages-Waiting: no", "SIP/2.0 200 OK")
			if out, err := hlasCmd(t, "", "mwi", "set", "alice@example.test", "--new", "2", "--old", "1", "--data", data); err != nil {
				t.Fatalf("hlas mwi set: %v\n%s", err, out)
			}
			run.wait(t)
			b, err := os.ReadFile(trace)
			if err != nil {
				t.Fatal(err)
			}
			wantLines(t, "sipp", string(b), "Messages-Waiting: no", "Messages-Waiting: yes",
				"Voice-Message: 2/1", "Expires: 0", "Subscription-State: terminated")
		})
	}
}

// TestPresenceSubscribeBadEvent: a SUBSCRIBE, with digest, for an event
// package the server does not serve for its users gets 489 Bad Event with
// Allow-Events (testdata/presence/bad_event.xml), over UDP and TCP.
func TestPresenceSubscribeBadEvent(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	s, _ := presenceServer(t)
	for _, tc := range uaTransports {
		t.Run(tc.name, func(t *testing.T) {
			for _, ev := range []string{"x-no-such-package", "conference"} {
				run, _ := startSipp(t, "127.0.0.1", "-sf", filepath.Join("presence", "bad_event.xml"),
					"-t", tc.sipp, "-s", "bob", "-set", "user", "alice", "-set", "event", ev,
					"-au", "alice", "-ap", presenceUsers["alice"], "-m", "1", "-timeout", "20s", "-timeout_error", s.UDP4)
				run.wait(t)
			}
		})
	}
}

// TestPresenceSubscribeForbidden: bob may not watch alice's mailbox, her
// watchers or her registrations: his SUBSCRIBE, with digest, gets 403 and
// no NOTIFY (testdata/presence/forbidden.xml), over UDP and TCP.
func TestPresenceSubscribeForbidden(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	s, _ := presenceServer(t)
	for _, tc := range uaTransports {
		t.Run(tc.name, func(t *testing.T) {
			for _, ev := range []string{"message-summary", "presence.winfo", "reg"} {
				run, _ := startSipp(t, "127.0.0.1", "-sf", filepath.Join("presence", "forbidden.xml"),
					"-t", tc.sipp, "-s", "alice", "-set", "user", "bob", "-set", "event", ev,
					"-au", "bob", "-ap", presenceUsers["bob"], "-m", "1", "-timeout", "20s", "-timeout_error", s.UDP4)
				run.wait(t)
			}
		})
	}
}

// TestPresenceSubscribeWinfo: bob, a sipp, watches who watches his
// presence (presence.winfo, RFC 3857; testdata/presence/winfo.xml). When
// alice's baresip subscribes to his presence, his watcher list shows her
// active; when she quits (unsubscribing), terminated. alice sees bob
// offline: nobody published his presence (RFC 3856 §6.6.4 in spirit).
func TestPresenceSubscribeWinfo(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	overTransports(t, func(t *testing.T, tr string) {
		s, _ := presenceServer(t)
		trace := filepath.Join(t.TempDir(), "messages.log")
		run, _ := startSipp(t, "127.0.0.1", "-sf", filepath.Join("presence", "winfo.xml"),
			"-t", map[string]string{"udp": "u1", "tcp": "t1"}[tr], "-set", "user", "bob", "-au", "bob", "-ap", presenceUsers["bob"],
			"-m", "1", "-timeout", "90s", "-timeout_error", "-trace_msg", "-message_file", trace, s.UDP4)
		waitFile(t, trace, run, 20*time.Second, "NOTIFY sip:bob@", "Event: presence.winfo", "</watcherinfo>", "SIP/2.0 200 OK")

		aliceDir, aliceConsole := presenceBaresip(t, s, tr, "alice", 60, 0, `"Bob" <sip:bob@example.test>;presence=p2p`)
		alice, aliceDone := startTracedBaresip(t, "alice", aliceDir, 60*time.Second)
		const timeout = 20 * time.Second // the server may space NOTIFYs by 5 s (RFC 6665 §4.1.2.1)
		waitContact(t, aliceConsole, "Offline", timeout)
		waitFile(t, trace, run, timeout, "NOTIFY sip:bob@", `status="active"`, ">sip:alice@example.test</watcher>", "SIP/2.0 200 OK")

		consoleCommand(t, aliceConsole, "/quit", 100*time.Millisecond)
		select {
		case err := <-aliceDone:
			if err != nil {
				t.Errorf("alice's baresip: %v", err)
			}
		case <-time.After(timeout):
			t.Errorf("alice's baresip did not quit:\n%s", tail(alice.String(), 4000))
		}
		wantLines(t, "alice", alice.String(), "SUBSCRIBE sip:bob@example.test", "Expires: 0", "SIP/2.0 200 OK")
		run.wait(t)
	})
}
