//go:build interop

package interop

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Presence between Linphone (linphonec 5.1, the console client of
// liblinphone) and `hlas serve`, both ways, over UDP with digest
// authentication. alice runs linphonec: she publishes her own presence
// (publish=1 in her account: a PUBLISH of a PIDF document once
// registered, removed when she quits) and subscribes to her friend bob's
// (`friend add`), printing "Friend ... is <status>" for every NOTIFY. bob
// is two sipp scenarios in testdata/linphone-presence/: a publisher
// (publish.xml, then modify.xml with the entity-tag of the last 200) and
// a watcher of alice (watch.xml).
//
// linphonec 5.1 has no command to set its own status (the old
// online/away/busy commands are gone, and linphone-daemon has no
// presence commands either): what it publishes is liblinphone's default,
// open, from start to quit.

// linPresenceFriend is how linphonec names bob, its friend, in its
// presence lines.
const linPresenceFriend = `Friend "Bob" <sip:bob@example.test> is `

// linPresenceServer creates the subscribers of the Linphone tests with
// `hlas user add` and starts `hlas serve` for example.test with the
// Prometheus endpoint on, returning the endpoint's address. NOTIFYs
// following state changes may be 1 s apart (5 s by default), so that each
// of bob's changes reaches Linphone soon.
func linPresenceServer(t *testing.T) (*linServer, string) {
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
	cfg := "domain: [ example.test ]\nt1: 100ms\nevents:\n  subscriptions:\n    min_notify_interval: 1s\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data, "--metrics-listen", metrics}})
	return &linServer{server: s, data: data}, metrics
}

// startPresenceLinphone runs linphonec as user@example.test over tr
// ("udp" or "tcp")
// with testdata/linphone-presence/linphonerc.tmpl (the server as
// registrar and outbound proxy, publishing its presence) and returns once
// it has registered. No sound card: nothing here makes a call.
func startPresenceLinphone(t *testing.T, s *linServer, user, tr string) *linphone {
	t.Helper()
	requireLinphone(t)
	home := t.TempDir()
	// liblinphone keeps its friends and call log here; without the
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
	tmpl, err := os.ReadFile(filepath.Join("testdata", "linphone-presence", "linphonerc.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	// The transport not used is off (-1): every message goes over tr.
	udpPort, tcpPort := strconv.Itoa(sipPort), "-1"
	if tr == "tcp" {
		udpPort, tcpPort = "-1", strconv.Itoa(sipPort)
	}
	rc := strings.NewReplacer(
		"@UDP_PORT@", udpPort,
		"@TCP_PORT@", tcpPort,
		"@RTP_PORT@", strconv.Itoa(rtpPort),
		"@PROXY@", fmt.Sprintf("<sip:%s;transport=%s;lr>", s.UDP4, tr),
		"@USER@", user,
		"@PASSWORD@", linSubscribers[user],
	).Replace(string(tmpl))
	rcPath := filepath.Join(home, "linphonerc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}

	l := &linphone{user: user, port: sipPort, logf: filepath.Join(home, "linphone.log"),
		out: &outputBuffer{limit: 4 << 20}, exited: make(chan struct{})}
	// -d 3 logs the SIP messages (belle-sip) to the -l file.
	args := []string{"-c", rcPath, "-d", "3", "-l", l.logf}
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
		l.cmd.Process.Pid, strings.Join(args, " "), user, tr, sipPort)
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
			t.Logf("linphonec (%s) log:\n%s", user, tail(l.log(t), 24000))
		}
	})

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
	return l
}

// waitFrom waits until linphonec has printed want after the first from
// bytes of its output and returns the index past it; it fails the test
// after linphoneWait or when linphonec exits first.
func (l *linphone) waitFrom(t *testing.T, from int, want string) int {
	t.Helper()
	deadline := time.Now().Add(linphoneWait)
	for {
		out := l.out.String()
		if i := strings.Index(out[min(from, len(out)):], want); i >= 0 {
			return from + i + len(want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("linphonec did not print %q within %v:\n%s", want, linphoneWait, tail(out, 8000))
		}
		select {
		case <-l.exited:
			t.Fatalf("linphonec exited before printing %q: %v\n%s", want, l.err, tail(l.out.String(), 8000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// etagRe finds the entity-tags in sipp's message trace of a PUBLISH.
var etagRe = regexp.MustCompile(`(?m)^SIP-ETag: (\S+)`)

// publishAs runs one sipp PUBLISH transaction as user (scenario
// publish.xml for a new publication, modify.xml with etag for a change of
// it) of a document whose tuple is basic and whose person does activity,
// requires it to end with 200, and returns the new entity-tag.
func publishAs(t *testing.T, s *linServer, user, scenario, etag, basic, activity string) string {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "messages.log")
	args := []string{"-sf", filepath.Join("linphone-presence", scenario), "-t", "u1",
		"-set", "user", user, "-set", "basic", basic, "-set", "activity", activity,
		"-au", user, "-ap", linSubscribers[user], "-m", "1", "-timeout", "15s", "-timeout_error",
		"-trace_msg", "-message_file", trace}
	if etag != "" {
		args = append(args, "-set", "etag", etag)
	}
	run, _ := startSipp(t, "127.0.0.1", append(args, s.UDP4)...)
	run.wait(t)
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	m := etagRe.FindAllStringSubmatch(string(b), -1)
	if t.Failed() || len(m) == 0 {
		t.Fatalf("%s's PUBLISH (%s %s) got no entity-tag; sipp's trace:\n%s", user, basic, activity, tail(string(b), 6000))
	}
	return m[len(m)-1][1]
}

// linNotifyRe and linNotify200Re find, in liblinphone's log, the NOTIFYs
// linphonec received and the 200 responses it sent to NOTIFYs.
var (
	linNotifyRe    = regexp.MustCompile(`(?m)^NOTIFY sip:`)
	linNotify200Re = regexp.MustCompile(`(?m)^SIP/2\.0 200 Ok\r?\n(?:[^\r\n]+\r?\n)*?CSeq: \d+ NOTIFY\r?$`)
)

// notifyAnswers counts the NOTIFYs in liblinphone's log and the 200s
// linphonec answered them with.
func notifyAnswers(log string) (notifies, ok200 int) {
	return len(linNotifyRe.FindAllStringIndex(log, -1)), len(linNotify200Re.FindAllStringIndex(log, -1))
}

// TestPresenceLinphone: Linphone as watcher and as presentity.
//
//   - bob (sipp, watch.xml) watches alice before her Linphone runs: a
//     closed tuple; once Linphone has registered and published (answering
//     the 407), her open tuple with Linphone's contact.
//   - Linphone adds bob as a friend and subscribes (answering the 407):
//     bob is Offline (nothing published). bob publishes (sipp: a new
//     publication, then changes of it with SIP-If-Match): open with no
//     activity, away, busy, on the phone (RPID), closed; Linphone shows
//     Online, Away, Busy, On the phone, Offline, in order.
//   - Linphone answered every NOTIFY with 200 (its log), and the server
//     saw no NOTIFY fail and holds both subscriptions (its metrics).
//   - Linphone quits: it removes its publication (PUBLISH, Expires: 0)
//     and ends its subscription (SUBSCRIBE, Expires: 0); bob sees alice
//     closed, then unsubscribes.
func TestPresenceLinphone(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	requireLinphone(t)
	overTransports(t, func(t *testing.T, tr string) { presenceLinphone(t, tr) })
}

// presenceLinphone is TestPresenceLinphone with Linphone over tr.
func presenceLinphone(t *testing.T, tr string) {
	s, metrics := linPresenceServer(t)
	const timeout = 20 * time.Second

	watchTrace := filepath.Join(t.TempDir(), "watch.log")
	watch, _ := startSipp(t, "127.0.0.1", "-sf", filepath.Join("linphone-presence", "watch.xml"), "-t", "u1",
		"-set", "user", "bob", "-au", "bob", "-ap", linSubscribers["bob"], "-m", "1", "-timeout", "60s", "-timeout_error",
		"-trace_msg", "-message_file", watchTrace, s.UDP4)
	waitFile(t, watchTrace, watch, timeout, "NOTIFY sip:bob@", "<basic>closed</basic>", "SIP/2.0 200 OK")

	lin := startPresenceLinphone(t, s, "alice", tr)
	waitFile(t, watchTrace, watch, timeout, "NOTIFY sip:bob@", "<basic>closed</basic>", "SIP/2.0 200 OK",
		"NOTIFY sip:bob@", "<basic>open</basic>", ">sip:alice@example.test</contact>", "SIP/2.0 200 OK")
	lin.waitLog(t, "PUBLISH sip:alice@example.test SIP/2.0", "Event: presence", "Content-Type: application/pidf+xml",
		"<basic>open</basic>", "SIP/2.0 407 Proxy Authentication Required",
		"PUBLISH sip:alice@example.test SIP/2.0", "Proxy-Authorization:", `username="alice"`,
		"SIP/2.0 200 OK", "CSeq: 21 PUBLISH", "SIP-ETag: ")

	// Over UDP Linphone's Contact is its listening port; over TCP, the
	// port of the connection it opened (RFC 5626 style reuse).
	notifyTo := "NOTIFY sip:alice@127.0.0.1:" + strconv.Itoa(lin.port)
	if tr == "tcp" {
		notifyTo = "NOTIFY sip:alice@127.0.0.1:"
	}
	lin.send(t, "friend add Bob sip:bob@example.test")
	at := lin.waitFrom(t, 0, linPresenceFriend+"Offline\n")
	lin.waitLog(t, "SUBSCRIBE sip:bob@example.test SIP/2.0", "Event: presence", "SIP/2.0 407 Proxy Authentication Required",
		"SUBSCRIBE sip:bob@example.test SIP/2.0", "Proxy-Authorization:", "SIP/2.0 200 OK", "CSeq: 21 SUBSCRIBE",
		notifyTo, "Subscription-State: active", "<basic>closed</basic>",
		"SIP/2.0 200 Ok", "CSeq: 1 NOTIFY")

	etag := publishAs(t, s, "bob", "publish.xml", "", "open", "unknown")
	at = lin.waitFrom(t, at, linPresenceFriend+"Online\n")
	for _, step := range []struct{ basic, activity, status string }{
		{"open", "away", "Away"},
		{"open", "busy", "Busy"},
		{"open", "on-the-phone", "On the phone"},
		{"closed", "unknown", "Offline"},
	} {
		etag = publishAs(t, s, "bob", "modify.xml", etag, step.basic, step.activity)
		at = lin.waitFrom(t, at, linPresenceFriend+step.status+"\n")
	}
	// What Linphone showed came from the server's NOTIFYs with bob's
	// documents, RPID person and all.
	lin.waitLog(t, "<rpid:away/>", "SIP/2.0 200 Ok", "<rpid:busy/>", "SIP/2.0 200 Ok",
		"<rpid:on-the-phone/>", "SIP/2.0 200 Ok", "<basic>closed</basic>", "SIP/2.0 200 Ok")

	// Every NOTIFY answered: 200 in Linphone's log; in the server's
	// metrics none failed, none is awaiting its answer, and Linphone's
	// and bob's subscriptions are active.
	deadline := time.Now().Add(timeout)
	for {
		notifies, ok := notifyAnswers(lin.log(t))
		m := scrape(t, metrics)
		var failed []string
		for k, v := range m {
			if strings.HasPrefix(k, `hlas_event_notify_failures_total{package="presence"`) && v > 0 {
				failed = append(failed, fmt.Sprintf("%s %v", k, v))
			}
		}
		if len(failed) > 0 {
			t.Fatalf("presence NOTIFYs failed while Linphone ran: %v", failed)
		}
		active := m[`hlas_event_subscriptions{package="presence",state="active"}`]
		inFlight := m["hlas_event_notifies_in_flight"]
		if notifies >= 6 && ok == notifies && inFlight == 0 && active == 2 {
			t.Logf("Linphone answered %d NOTIFYs with 200; the server sent %v presence NOTIFYs",
				notifies, m[`hlas_event_notifies_total{package="presence"}`])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Linphone got %d NOTIFYs and answered %d with 200 (want 6 or more, all); server: %v in flight, %v active presence subscriptions (want 0, 2)",
				notifies, ok, inFlight, active)
		}
		time.Sleep(50 * time.Millisecond)
	}
	noLine(t, "hlas serve", s.output.String(), `msg="NOTIFY failed"`)

	lo := lin.quit(t)
	wantLines(t, "linphonec", lo, linPresenceFriend+"Offline", linPresenceFriend+"Online", linPresenceFriend+"Away",
		linPresenceFriend+"Busy", linPresenceFriend+"On the phone", linPresenceFriend+"Offline")
	lin.waitLog(t, "PUBLISH sip:alice@example.test SIP/2.0", "Expires: 0", "SIP-If-Match: ")
	lin.waitLog(t, "SUBSCRIBE sip:"+s.UDP4, "Event: presence", "Expires: 0")

	// Linphone's publication removed, bob sees alice closed, and ends his
	// subscription.
	watch.wait(t)
	b, err := os.ReadFile(watchTrace)
	if err != nil {
		t.Fatal(err)
	}
	wt := string(b)
	open := strings.LastIndex(wt, "<basic>open</basic>")
	if open < 0 {
		t.Fatalf("bob never saw alice open:\n%s", tail(wt, 8000))
	}
	wantLines(t, "bob's watcher", wt[open:], "NOTIFY sip:bob@", "Subscription-State: active", "<basic>closed</basic>",
		"SIP/2.0 200 OK", "SUBSCRIBE sip:", "Expires: 0", "SIP/2.0 200 OK",
		"NOTIFY sip:bob@", "Subscription-State: terminated", "SIP/2.0 200 OK")
	wantLines(t, "hlas serve", s.output.String(),
		"msg=authenticated feature=auth method=PUBLISH aor=alice@example.test",
		"msg=authenticated feature=auth method=SUBSCRIBE aor=alice@example.test",
		"msg=authenticated feature=auth method=PUBLISH aor=bob@example.test")
}

// waitLog is wantLog polling liblinphone's log until want is there in
// order or 10 s pass: the log is written after the console line the test
// waited for (a NOTIFY's 200 after the friend's new status).
func (l *linphone) waitLog(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rest, ok := l.log(t), true
		for _, w := range want {
			i := strings.Index(rest, w)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(w):]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			l.wantLog(t, want...) // reports what is missing
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
