//go:build interop

package interop

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Buddy lists: the XCAP server (RFC 4825) driven by curl, a client
// written elsewhere, with HTTP digest; and a resource list subscription
// (RFC 4662) by sipp to the list curl wrote (testdata/presence/
// rls_subscribe.xml). Test names start with Presence.

// curlXCAP runs curl with digest authentication as user and returns the
// HTTP status and the body. method is GET, PUT or DELETE; a PUT sends
// body with contentType.
func curlXCAP(t *testing.T, user, password, method, url, contentType, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"--silent", "--show-error", "--digest", "--user", user + ":" + password, "-X", method,
		"--output", "-", "--write-out", "\n%{http_code}", "--globoff", url}
	if method == "PUT" {
		args = append(args, "-H", "Content-Type: "+contentType, "--data-binary", "@-")
	}
	cmd := exec.CommandContext(ctx, "curl", args...)
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v\n%s", method, url, err, out)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	code, err := strconv.Atoi(s[i+1:])
	if err != nil {
		t.Fatalf("curl %s %s: no status in %q", method, url, s)
	}
	if i < 0 {
		return code, ""
	}
	return code, s[:i]
}

const (
	xcapLists = `<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="buddies">
    <entry uri="sip:bob@example.test"><display-name>Bob</display-name></entry>
  </list>
</resource-lists>`
	xcapPresRules = `<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy">
  <cr:rule id="block-mallory">
    <cr:conditions><cr:identity><cr:one id="sip:mallory@example.test"/></cr:identity></cr:conditions>
    <cr:actions><sub-handling>block</sub-handling></cr:actions>
  </cr:rule>
</cr:ruleset>`
)

func xcapServices(base string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">
  <service uri="sip:alice-buddies@example.test">
    <resource-list>` + base + `/resource-lists/users/sip:alice@example.test/index/~~/resource-lists/list%5b@name=%22buddies%22%5d</resource-list>
    <packages><package>presence</package></packages>
  </service>
</rls-services>`
}

// TestPresenceListXCAP: alice's softphone keeps her buddy list and her
// presence rules on the XCAP server (curl: document PUT 201, GET back
// with ETag, conditional PUT with a stale ETag 412, element PUT,
// another user 403, a wrong password 401); `hlas presence list` and
// `hlas list show` see what XCAP wrote; sipp subscribes to the list and
// sees bob, then carol after an XCAP element PUT adds her, over UDP and
// TCP.
func TestPresenceListXCAP(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	for _, tc := range uaTransports {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port, err := freePort("127.0.0.1", false)
			if err != nil {
				t.Fatal(err)
			}
			xaddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			s, data := presenceServer(t, "xcap:", "  listen: "+xaddr)
			base := "http://" + xaddr + "/xcap-root"
			lists := base + "/resource-lists/users/sip:alice@example.test/index"
			alice := presenceUsers["alice"]

			if code, body := curlXCAP(t, "alice", "wrong", "GET", lists, "", ""); code != 401 {
				t.Fatalf("wrong password: %d %s", code, body)
			}
			if code, body := curlXCAP(t, "alice", alice, "PUT", lists, "application/resource-lists+xml", xcapLists); code != 201 {
				t.Fatalf("PUT resource-lists: %d %s", code, body)
			}
			if code, body := curlXCAP(t, "alice", alice, "PUT", base+"/rls-services/users/sip:alice@example.test/index",
				"application/rls-services+xml", xcapServices(base)); code != 201 {
				t.Fatalf("PUT rls-services: %d %s", code, body)
			}
			if code, body := curlXCAP(t, "alice", alice, "GET", lists, "", ""); code != 200 || !strings.Contains(body, `uri="sip:bob@example.test"`) {
				t.Fatalf("GET resource-lists: %d %s", code, body)
			}
			if code, body := curlXCAP(t, "bob", presenceUsers["bob"], "GET", lists, "", ""); code != 403 {
				t.Fatalf("bob reading alice's lists: %d %s", code, body)
			}
			if code, body := curlXCAP(t, "alice", alice, "PUT", base+"/pres-rules/users/sip:alice@example.test/index",
				"application/auth-policy+xml", xcapPresRules); code != 201 {
				t.Fatalf("PUT pres-rules: %d %s", code, body)
			}
			if out, err := hlasCmd(t, "", "presence", "list", "alice@example.test", "--data", data); err != nil ||
				!strings.Contains(out, "mallory@example.test") || !strings.Contains(out, "block") {
				t.Fatalf("hlas presence list after the pres-rules PUT: %v\n%s", err, out)
			}

			trace := filepath.Join(t.TempDir(), "messages.log")
			run, _ := startSipp(t, "127.0.0.1", "-sf", filepath.Join("presence", "rls_subscribe.xml"),
				"-t", tc.sipp, "-set", "user", "alice", "-au", "alice", "-ap", alice,
				"-m", "1", "-timeout", "60s", "-timeout_error", "-trace_msg", "-message_file", trace, s.UDP4)
			waitFile(t, trace, run, 20*time.Second, "NOTIFY sip:alice@", "Require: eventlist", "sip:bob@example.test", "SIP/2.0 200 OK")

			// carol joins the list by an element PUT.
			entry := lists + `/~~/resource-lists/list%5b@name=%22buddies%22%5d/entry%5b@uri=%22sip:carol@example.test%22%5d`
			if code, body := curlXCAP(t, "alice", alice, "PUT", entry, "application/xcap-el+xml",
				`<entry uri="sip:carol@example.test"><display-name>Carol</display-name></entry>`); code != 201 {
				t.Fatalf("element PUT: %d %s", code, body)
			}
			run.wait(t)
			if out, err := hlasCmd(t, "", "list", "show", "alice@example.test", "--data", data); err != nil ||
				!strings.Contains(out, "sip:carol@example.test") || !strings.Contains(out, "sip:alice-buddies@example.test") {
				t.Fatalf("hlas list show: %v\n%s", err, out)
			}
			b, err := os.ReadFile(trace)
			if err != nil {
				t.Fatal(err)
			}
			wantLines(t, "sipp", string(b), "SUBSCRIBE sip:alice-buddies@example.test", "Require: eventlist",
				"multipart/related", "sip:carol@example.test", "Expires: 0", "Subscription-State: terminated")
		})
	}
}

// TestPresenceListCommand: `hlas list add` makes a list and its service
// while the server runs, and sipp's list subscription sees the member.
func TestPresenceListCommand(t *testing.T) {
	t.Parallel()
	s, data := presenceServer(t)
	out, err := hlasCmd(t, "", "list", "add", "alice@example.test", "buddies", "sip:bob@example.test", "Bob", "--data", data)
	if err != nil || !strings.Contains(out, "sip:alice-buddies@example.test") {
		t.Fatalf("hlas list add: %v\n%s", err, out)
	}
	// The server reads the lists once a second; a SUBSCRIBE before then
	// finds no list there (404).
	time.Sleep(2 * time.Second)
	trace := filepath.Join(t.TempDir(), "messages.log")
	run, _ := startSipp(t, "127.0.0.1", "-sf", filepath.Join("presence", "rls_subscribe.xml"),
		"-t", "u1", "-set", "user", "alice", "-au", "alice", "-ap", presenceUsers["alice"],
		"-m", "1", "-timeout", "60s", "-timeout_error", "-trace_msg", "-message_file", trace, s.UDP4)
	waitFile(t, trace, run, 20*time.Second, "NOTIFY sip:alice@", "sip:bob@example.test", "SIP/2.0 200 OK")
	if out, err := hlasCmd(t, "", "list", "add", "alice@example.test", "buddies", "sip:carol@example.test", "--data", data); err != nil {
		t.Fatalf("hlas list add carol: %v\n%s", err, out)
	}
	run.wait(t)
	if out, err := hlasCmd(t, "", "list", "del", "alice@example.test", "buddies", "--data", data); err != nil {
		t.Fatalf("hlas list del: %v\n%s", err, out)
	}
	if out, _ := hlasCmd(t, "", "list", "show", "alice@example.test", "--data", data); strings.Contains(out, "buddies") {
		t.Fatalf("the list is still there:\n%s", out)
	}
}
