//go:build interop

package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Click-to-call (docs/api.md "Click-to-call", package tpcc) with real
// phones, the REST API driven by the curl binary exactly as the
// documentation shows: `hlas serve` with the API on, two baresips
// registered as alice and bob that answer automatically, each sending its
// own tone and recording what it hears. POST /api/v1/calls rings alice,
// then bob with her offer, then re-INVITEs alice with bob's answer (RFC
// 3725 Flow IV), as the phones' SIP traces show; each phone must then
// hear the other's tone: bob hears alice only once the re-INVITE gave her
// bob's address. DELETE /api/v1/calls/{call_id} hangs
// the whole call up; the records say the API did. A callee with no phone
// fails the call, and alice's phone gets a BYE. Test names start with
// ClickToCall.

const (
	// c2cAliceHz and c2cBobHz are the tones the phones send (ausine).
	c2cAliceHz = 440
	c2cBobHz   = 1000
	// c2cStep bounds each step: a registration, a call being set up or
	// ending, an event arriving. baresip and hlas under -race, beside
	// other tests, are slow.
	c2cStep = 30 * time.Second
	// c2cTalk is how long the two talk before their recordings are read.
	c2cTalk = 3 * time.Second
	// c2cHeard is how much of the end of a recording is analysed: well
	// within c2cTalk, so it is all talk.
	c2cHeard = 1500 * time.Millisecond
	// c2cMinRMS is the least level of what a phone hears: ausine's tone
	// through G.711 is far louder, silence (a held call) far below.
	c2cMinRMS = 0.01
	// c2cPhoneLife is how long the phones run at most.
	c2cPhoneLife = 3 * time.Minute
)

// c2cLab is `hlas serve` with the API on, alice, bob and carol as
// subscribers of example.test, a token, the event stream and the two
// phones.
type c2cLab struct {
	s     *server
	api   string // "http://127.0.0.1:port/api/v1", as $API in the docs
	token string
	alice *c2cPhone
	bob   *c2cPhone
	ev    *c2cStream
}

// c2cPhone is one baresip registered through hlas.
type c2cPhone struct {
	name string
	dir  string // its configuration
	// recordings holds what it hears in each call (sndfile).
	recordings string
	out        *outputBuffer
	done       chan error
}

// TestClickToCallBaresip: alice's and bob's baresips connected by
// POST /api/v1/calls, hung up by DELETE; and a call to carol, who has
// no phone, failing.
func TestClickToCallBaresip(t *testing.T) {
	t.Parallel() // waits on phones and timers, not the CPU
	l := startC2CLab(t)

	t.Run("connect-and-hang-up", func(t *testing.T) {
		aliceMark, bobMark := len(l.alice.out.String()), len(l.bob.out.String())
		evMark := l.ev.mark()
		o := l.originate(t, "bob")

		// RFC 3725 Flow IV, told in the event stream.
		connected := l.ev.wait(t, evMark, "origination", func(e c2cEvent) bool {
			return e.str("id") == o.ID && (e.Action == "connected" || e.Action == "failed" || e.Action == "ended")
		})
		if connected.Action != "connected" {
			t.Fatalf("the origination %s: %s %v, want connected", o.ID, connected.Action, connected.Data)
		}
		legA, legB := connected.str("call_id_a"), connected.str("call_id_b")
		if legA != o.CallID || legB == "" || legB == legA {
			t.Errorf("connected: call_id_a %q, call_id_b %q; POST said call_id %q", legA, legB, o.CallID)
		}
		if got, want := l.ev.states(evMark, o.ID), []string{"calling-a", "ringing-a", "answered-a", "calling-b", "ringing-b", "connected"}; !slices.Equal(got, want) {
			t.Errorf("origination states %v, want %v", got, want)
		}

		// Each phone shows whom it talks to (leg a's From is bob).
		l.alice.waitOutput(t, aliceMark, "Call established: sip:bob@example.test")
		l.bob.waitOutput(t, bobMark, "Call established: sip:alice@example.test")
		// The SIP exchange, as each phone traced it: alice is asked for
		// an offer, held by the ACK's answer, and re-INVITEd with bob's
		// answer; bob is INVITEd with alice's offer.
		// Alice's re-INVITE may still be on its way when bob's phone says
		// it is established: the trace is read once her ACK is in it.
		aliceWant := []string{"INVITE sip:alice-", "SIP/2.0 200 Answering", "m=audio ",
			"ACK sip:alice-", "c=IN IP4 0.0.0.0", "a=inactive", "Call established: sip:bob@example.test",
			"INVITE sip:alice-", "a=sendrecv", "SIP/2.0 200 OK", "ACK sip:alice-"}
		waitFor(c2cStep, func() bool {
			_, ok := inOrder(l.alice.out.String()[aliceMark:], aliceWant...)
			return ok
		})
		aliceSIP, bobSIP := l.alice.out.String()[aliceMark:], l.bob.out.String()[bobMark:]
		wantLines(t, "alice", aliceSIP, aliceWant...)
		wantLines(t, "bob", bobSIP, "INVITE sip:bob-", "a=sendrecv", "SIP/2.0 200 Answering", "m=audio ",
			"ACK sip:bob-", "Call established: sip:alice@example.test")
		alicePort, bobPort := sdpPortAfter(aliceSIP, "SIP/2.0 200 Answering"), sdpPortAfter(bobSIP, "SIP/2.0 200 Answering")
		if p := sdpPortAfter(bobSIP, "INVITE sip:bob-"); alicePort == "" || p != alicePort {
			t.Errorf("bob was offered port %q; alice offered %q", p, alicePort)
		}
		if p := sdpPortAfter(aliceSIP, "Call established"); bobPort == "" || p != bobPort {
			t.Errorf("alice's re-INVITE offered port %q; bob answered %q", p, bobPort)
		}

		// Both legs are calls the proxy tracks, answered.
		calls := l.calls(t)
		if len(calls) != 2 {
			t.Fatalf("GET /calls: %d calls, want the two legs: %+v", len(calls), calls)
		}
		byID := map[string]c2cCall{}
		for _, c := range calls {
			byID[c.CallID] = c
			if c.State != "confirmed" {
				t.Errorf("GET /calls: %s is %s, want confirmed", c.CallID, c.State)
			}
		}
		// Leg A shows alice whom she will talk to; leg B comes from alice.
		if a := byID[legA]; a.From != "sip:bob@example.test" || a.To != "sip:alice@example.test" {
			t.Errorf("GET /calls: leg a %+v, want from sip:bob@example.test to sip:alice@example.test", a)
		}
		if b := byID[legB]; b.From != "sip:alice@example.test" || !strings.HasPrefix(b.To, "sip:bob@example.test") {
			t.Errorf("GET /calls: leg b %+v, want from sip:alice@example.test to sip:bob@example.test", b)
		}

		// They talk: each hears the other. Bob hears alice only since the
		// re-INVITE gave her his address; alice hears him since he got
		// her offer.
		time.Sleep(c2cTalk)
		l.alice.checkHeard(t, c2cBobHz)
		l.bob.checkHeard(t, c2cAliceHz)

		// Hang up alice's leg through the API; the controller ends bob's.
		aliceMark, bobMark = len(l.alice.out.String()), len(l.bob.out.String())
		code, body := l.curl(t, "-X", "DELETE", l.api+"/calls/"+uriEscape(legA))
		var hung struct {
			CallID string `json:"call_id"`
			Action string `json:"action"`
		}
		if err := json.Unmarshal([]byte(body), &hung); code != 202 || err != nil || hung.CallID != legA || hung.Action != "bye" {
			t.Fatalf("DELETE /calls/%s = %d %s, want 202 with action bye", legA, code, body)
		}
		// baresip's words for a call that ended, named by its peer.
		l.alice.waitOutput(t, aliceMark, "sip:bob@example.test: session closed")
		l.bob.waitOutput(t, bobMark, "sip:alice@example.test: session closed")
		ended := l.ev.wait(t, evMark, "origination", func(e c2cEvent) bool {
			return e.str("id") == o.ID && e.Action == "ended"
		})
		// The proxy's BYE reaches the controller on leg a as if alice
		// had hung up.
		if r := ended.str("reason"); r != "a-hangup" {
			t.Errorf("ended: reason %q, want a-hangup: %v", r, ended.Data)
		}
		for _, leg := range []string{legA, legB} {
			l.ev.wait(t, evMark, "call", func(e c2cEvent) bool { return e.Action == "ended" && e.str("call_id") == leg })
		}
		if !waitFor(c2cStep, func() bool { return len(l.calls(t)) == 0 }) {
			t.Errorf("GET /calls: still %+v after the hang-up", l.calls(t))
		}

		recs := l.cdrs(t, legA, legB)
		if r := recs[legA]; r["status"] != "answered" || r["code"] != float64(200) || r["ended_by"] != "proxy" || r["end_reason"] != "api" ||
			r["callee"] != "alice@example.test" || r["user"] != "" {
			t.Errorf("leg a's record: %v, want answered, ended_by proxy, end_reason api", r)
		}
		if r := recs[legB]; r["status"] != "answered" || r["code"] != float64(200) || r["ended_by"] != "caller" || r["end_reason"] != "bye" ||
			r["caller"] != "alice@example.test" || r["callee"] != "bob@example.test" || r["user"] != "" {
			t.Errorf("leg b's record: %v, want answered, ended by the caller (the controller) with BYE", r)
		}
	})

	t.Run("callee-unavailable", func(t *testing.T) {
		aliceMark := len(l.alice.out.String())
		evMark := l.ev.mark()
		o := l.originate(t, "carol")
		failed := l.ev.wait(t, evMark, "origination", func(e c2cEvent) bool {
			return e.str("id") == o.ID && (e.Action == "failed" || e.Action == "connected" || e.Action == "ended")
		})
		// carol is a subscriber with no phone registered: the proxy
		// answers 480 (RFC 3261 §21.4.18), and alice's phone, which
		// answered, gets a BYE.
		if failed.Action != "failed" || failed.str("leg") != "b" || failed.num("code") != 480 {
			t.Fatalf("the origination %s: %s %v, want failed, leg b, code 480", o.ID, failed.Action, failed.Data)
		}
		if got, want := l.ev.states(evMark, o.ID), []string{"calling-a", "ringing-a", "answered-a", "calling-b", "failed"}; !slices.Equal(got, want) {
			t.Errorf("origination states %v, want %v", got, want)
		}
		at := l.alice.waitOutput(t, aliceMark, "Call established: sip:carol@example.test")
		at = l.alice.waitOutput(t, at, "BYE sip:alice-")
		l.alice.waitOutput(t, at, "sip:carol@example.test: session closed")
		if !waitFor(c2cStep, func() bool { return len(l.calls(t)) == 0 }) {
			t.Errorf("GET /calls: still %+v after the failure", l.calls(t))
		}
		legA, legB := failed.str("call_id_a"), failed.str("call_id_b")
		if legA != o.CallID || legB == "" {
			t.Fatalf("failed: call_id_a %q, call_id_b %q; POST said %q", legA, legB, o.CallID)
		}
		recs := l.cdrs(t, legA, legB)
		if r := recs[legA]; r["status"] != "answered" || r["ended_by"] != "caller" || r["end_reason"] != "bye" || r["callee"] != "alice@example.test" {
			t.Errorf("leg a's record: %v, want answered, ended by the caller (the controller) with BYE", r)
		}
		if r := recs[legB]; r["status"] != "failed" || r["code"] != float64(480) || r["callee"] != "carol@example.test" {
			t.Errorf("leg b's record: %v, want failed with 480", r)
		}
	})
}

// startC2CLab starts hlas with the API, the event stream (curl) and the
// two phones, registered.
func startC2CLab(t *testing.T) *c2cLab {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is required but not installed (%v); install the Debian package curl", err)
	}
	data := t.TempDir()
	for _, u := range []string{"alice", "bob", "carol"} {
		if out, err := hlasCmd(t, "", "user", "add", u+"@example.test", "--password", regSubscribers[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	out, err := exec.Command(hlasBin, "api", "token", "add", "clicktocall", "--data", data).Output()
	l := &c2cLab{token: strings.TrimSpace(string(out))}
	if err != nil || len(l.token) != 43 {
		t.Fatalf("hlas api token add: %v, printed %q", err, out)
	}
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := fmt.Sprintf("domain: [ example.test ]\nt1: 100ms\napi: { listen: %q }\n", apiAddr)
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l.s = startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hlas output:\n%s", l.s.output.Tail(maxLoggedOutput))
		}
	})
	l.api = "http://" + apiAddr + "/api/v1"
	l.ev = startC2CStream(t, l.api, l.token)

	l.alice = startC2CPhone(t, l.s, "alice", c2cAliceHz, "41200-41299")
	l.bob = startC2CPhone(t, l.s, "bob", c2cBobHz, "41300-41399")
	for _, u := range []string{"alice", "bob"} {
		aor := u + "@example.test"
		if !waitFor(c2cStep, func() bool {
			code, body := l.curlQuiet(t, l.api+"/registrations?aor="+aor)
			var regs struct{ Items []json.RawMessage }
			return code == 200 && json.Unmarshal([]byte(body), &regs) == nil && len(regs.Items) == 1
		}) {
			t.Fatalf("%s's baresip did not register within %v", u, c2cStep)
		}
	}
	return l
}

// startC2CPhone starts baresip registered as user (with digest, through
// hlas as outbound proxy), answering automatically, sending a sine at hz
// and recording what it hears (sndfile).
func startC2CPhone(t *testing.T, s *server, user string, hz int, rtpPorts string) *c2cPhone {
	t.Helper()
	p := &c2cPhone{name: user, recordings: t.TempDir()}
	p.dir = baresipConfigWith(t, baresipListenAddr(t), baresipOptions{
		rtpPorts: rtpPorts,
		accounts: fmt.Sprintf("<sip:%s@example.test>;auth_pass=%s;outbound=\"sip:%s\";regint=300;answermode=auto;"+
			"audio_codecs=PCMU/8000/1,PCMA/8000/1\n", user, regSubscribers[user], s.UDP4),
		extra: []string{
			// Media on loopback too, not the host's own address.
			"net_interface 127.0.0.1",
			// baresip 1.0's aufile is a source only: sndfile records
			// what the phone decodes, dump-TIME-dec.wav in recordings.
			"module sndfile.so",
			"snd_path " + p.recordings,
		},
	})
	// baresipConfigWith's source is a 440 Hz sine; ausine takes the
	// frequency as its device.
	file := filepath.Join(p.dir, "config")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	const source = "audio_source ausine,440\n"
	if !strings.Contains(string(b), source) {
		t.Fatalf("%s has no %q line", file, strings.TrimSpace(source))
	}
	b = []byte(strings.Replace(string(b), source, fmt.Sprintf("audio_source ausine,%d\n", hz), 1))
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p.out, p.done = startTracedBaresip(t, user, p.dir, c2cPhoneLife)
	return p
}

// waitOutput waits until the phone printed want after offset from, and
// returns the offset after it.
func (p *c2cPhone) waitOutput(t *testing.T, from int, want string) int {
	t.Helper()
	return waitOutput(t, p.name, p.out, p.done, from, want, c2cStep)
}

// checkHeard fails the test unless the strongest tone in the last
// c2cHeard of the phone's newest recording is within toneSlackHz of hz,
// and loud.
func (p *c2cPhone) checkHeard(t *testing.T, hz int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(p.recordings, "dump-*-dec.wav"))
	if err != nil || len(files) == 0 {
		t.Errorf("%s: no recording in %s (%v)", p.name, p.recordings, err)
		return
	}
	sort.Strings(files) // by the time in their names
	path := files[len(files)-1]
	samples, rate, err := readWAV(path)
	if err != nil {
		t.Errorf("%s: %v", p.name, err)
		return
	}
	n := int(c2cHeard.Seconds() * float64(rate))
	if len(samples) < n {
		t.Errorf("%s: %s holds %.2fs, want at least %v", p.name, path, float64(len(samples))/float64(rate), c2cHeard)
		return
	}
	got, rms := strongestTone(samples[len(samples)-n:], rate)
	t.Logf("%s heard %v Hz at RMS %.4f in the last %v of %s (%.1fs; %d recordings)",
		p.name, got, rms, c2cHeard, filepath.Base(path), float64(len(samples))/float64(rate), len(files))
	if math.Abs(got-float64(hz)) > toneSlackHz || rms < c2cMinRMS {
		t.Errorf("%s heard %v Hz at RMS %.4f, want the other phone's %d Hz", p.name, got, rms, hz)
	}
}

// sdpMediaPort matches an audio media line of an SDP body.
var sdpMediaPort = regexp.MustCompile(`m=audio (\d+) `)

// sdpPortAfter returns the port of the first audio media line in trace
// after marker, or "".
func sdpPortAfter(trace, marker string) string {
	_, rest, ok := strings.Cut(trace, marker)
	if !ok {
		return ""
	}
	if m := sdpMediaPort.FindStringSubmatch(rest); m != nil {
		return m[1]
	}
	return ""
}

// c2cOrigination is POST /api/v1/calls's answer.
type c2cOrigination struct {
	ID     string `json:"id"`
	From   string `json:"from"`
	To     string `json:"to"`
	CallID string `json:"call_id"`
	State  string `json:"state"`
}

// originate starts a click-to-call from alice to to, as the docs show,
// and requires 202.
func (l *c2cLab) originate(t *testing.T, to string) c2cOrigination {
	t.Helper()
	code, body := l.curl(t, "-X", "POST", l.api+"/calls", "-d", fmt.Sprintf(`{"from":"alice","to":%q}`, to))
	var o c2cOrigination
	if err := json.Unmarshal([]byte(body), &o); code != 202 || err != nil {
		t.Fatalf("POST /calls = %d %s (%v), want 202", code, body, err)
	}
	if o.ID == "" || o.CallID == "" || o.From != "alice@example.test" || o.To != to || o.State != "calling-a" {
		t.Errorf("POST /calls answered %s", body)
	}
	return o
}

// c2cCall is an item of GET /api/v1/calls.
type c2cCall struct {
	CallID string `json:"call_id"`
	From   string `json:"from"`
	To     string `json:"to"`
	State  string `json:"state"`
}

// calls lists the active calls.
func (l *c2cLab) calls(t *testing.T) []c2cCall {
	t.Helper()
	code, body := l.curlQuiet(t, l.api+"/calls")
	var list struct{ Items []c2cCall }
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil {
		t.Fatalf("GET /calls = %d %s (%v)", code, body, err)
	}
	return list.Items
}

// cdrs waits until GET /api/v1/cdrs has the records of the calls with
// these Call-IDs, and returns them by Call-ID.
func (l *c2cLab) cdrs(t *testing.T, callIDs ...string) map[string]map[string]any {
	t.Helper()
	recs := map[string]map[string]any{}
	var last string
	if !waitFor(c2cStep, func() bool {
		code, body := l.curlQuiet(t, l.api+"/cdrs?kind=call&limit=1000")
		last = body
		var page struct{ Items []map[string]any }
		if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
			return false
		}
		for _, r := range page.Items {
			if id, _ := r["call_id"].(string); slices.Contains(callIDs, id) {
				recs[id] = r
			}
		}
		return len(recs) == len(callIDs)
	}) {
		t.Fatalf("GET /cdrs: no records of %v within %v:\n%s", callIDs, c2cStep, last)
	}
	t.Logf("records: %v", recs)
	return recs
}

// curl runs the curl binary with the token, as the docs do, and returns
// the HTTP status and the body; it logs the command (without the token)
// and the answer.
func (l *c2cLab) curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, body := l.curlQuiet(t, args...)
	t.Logf("curl -s -H 'Authorization: Bearer ...' %s → %d %s", strings.Join(args, " "), code, body)
	return code, body
}

// curlQuiet is curl without the log, for polling.
func (l *c2cLab) curlQuiet(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c2cStep)
	defer cancel()
	full := append([]string{"-s", "-H", "Authorization: Bearer " + l.token, "-w", "\n%{http_code}"}, args...)
	out, err := exec.CommandContext(ctx, "curl", full...).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", strings.Join(args, " "), err)
	}
	body, status, _ := strings.Cut(string(out), "\n")
	for strings.Contains(status, "\n") { // the body had newlines: the status is the last line
		var more string
		more, status, _ = strings.Cut(status, "\n")
		body += "\n" + more
	}
	code, err := strconv.Atoi(status)
	if err != nil {
		t.Fatalf("curl %s: no status in %q", strings.Join(args, " "), out)
	}
	return code, body
}

// uriEscape percent-encodes s as the docs' `jq -sRr @uri` does: all but
// RFC 3986's unreserved characters.
func uriEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// c2cEvent is one event of the stream.
type c2cEvent struct {
	Seq    int            `json:"seq"`
	Type   string         `json:"type"`
	Action string         `json:"action"`
	Data   map[string]any `json:"data"`
}

// str returns a string field of the event's data.
func (e c2cEvent) str(key string) string {
	s, _ := e.Data[key].(string)
	return s
}

// num returns a number field of the event's data.
func (e c2cEvent) num(key string) int {
	f, _ := e.Data[key].(float64)
	return int(f)
}

// c2cStream is `curl -sN .../events?types=origination,call` and the
// events it printed.
type c2cStream struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the output has been read to its end

	mu     sync.Mutex
	events []c2cEvent
	bad    []string // data lines that were not events
}

// startC2CStream runs curl on the event stream and waits until the
// server has sent its first line, so that no event after that is missed.
func startC2CStream(t *testing.T, api, token string) *c2cStream {
	t.Helper()
	st := &c2cStream{done: make(chan struct{})}
	st.cmd = exec.Command("curl", "-sN", "-H", "Authorization: Bearer "+token, api+"/events?types=origination,call")
	stdout, err := st.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started curl (pid %d) -sN -H 'Authorization: Bearer ...' %s/events?types=origination,call", st.cmd.Process.Pid, api)
	started := make(chan struct{})
	go func() {
		defer close(st.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		first := true
		for sc.Scan() {
			line := sc.Text()
			if first {
				first = false
				close(started)
			}
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				continue
			}
			var e c2cEvent
			st.mu.Lock()
			if err := json.Unmarshal([]byte(data), &e); err != nil || e.Type == "" {
				st.bad = append(st.bad, line)
			} else {
				st.events = append(st.events, e)
			}
			st.mu.Unlock()
		}
		if first {
			close(started)
		}
	}()
	t.Cleanup(func() {
		st.cmd.Process.Kill()
		<-st.done
		st.cmd.Wait()
		st.mu.Lock()
		defer st.mu.Unlock()
		if len(st.bad) > 0 {
			t.Errorf("the event stream had lines that are not events: %q", st.bad)
		}
		if t.Failed() {
			for _, e := range st.events {
				t.Logf("event %d %s %s %v", e.Seq, e.Type, e.Action, e.Data)
			}
		}
	})
	select {
	case <-started:
	case <-time.After(c2cStep):
		t.Fatalf("curl got nothing from the event stream within %v", c2cStep)
	}
	select {
	case <-st.done:
		t.Fatalf("curl's event stream ended at once")
	default:
	}
	return st
}

// mark is the number of events so far.
func (st *c2cStream) mark() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.events)
}

// wait returns the first event from index from on of type typ that
// matches, and fails the test if none comes within c2cStep.
func (st *c2cStream) wait(t *testing.T, from int, typ string, match func(c2cEvent) bool) c2cEvent {
	t.Helper()
	var found *c2cEvent
	waitFor(c2cStep, func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		for i := from; i < len(st.events); i++ {
			if e := st.events[i]; e.Type == typ && match(e) {
				found = &e
				return true
			}
		}
		return false
	})
	if found == nil {
		t.Fatalf("no such %s event within %v", typ, c2cStep)
	}
	return *found
}

// states are the origination's states, in the order of the stream, from
// index from on.
func (st *c2cStream) states(from int, id string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for _, e := range st.events[from:] {
		if e.Type == "origination" && e.str("id") == id {
			out = append(out, e.Action)
		}
	}
	return out
}
