//go:build interop

package interop

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A reload under load loses no call (issue 16, docs/reload.md): sipp
// calls through `hlas serve` to one of two sipp gateways while the
// configuration file is rewritten and reloaded, by SIGHUP and by POST
// /api/v1/reload in turn. Every call must complete, every call must have
// its record, and each call must have gone to the gateway the rules named
// when it arrived.

const (
	// reloadCalls calls at reloadRate per second, each reloadCallLength
	// long: about 20 s of load with some 60 calls up at any moment.
	reloadCalls      = 800
	reloadRate       = 40
	reloadCallLength = 1500 * time.Millisecond
	// reloadFirst is when the first reload comes after the load starts,
	// reloadEvery the time between reloads: six of them within the
	// load, each followed by enough calls to see where they went.
	reloadFirst = 3 * time.Second
	reloadEvery = 2500 * time.Millisecond
	// reloadSlack is how long after a reload a call may still have been
	// routed by the rules before it. The proxy reads the rules when the
	// request enters them and the accounting stamps the record's start
	// a moment later, when the request is forwarded; under -race and load
	// that moment can stretch. A call that started within it may have
	// gone to either gateway; every other call has one right answer.
	reloadSlack = 250 * time.Millisecond
	// reloadUnknownKey is the key the invalid file adds.
	reloadUnknownKey = "bogus_reload_key"
)

// reloadScenarios are the sipp scenarios of the test, made from the
// ones in testdata so that the two do not drift apart: the UAC is
// cdr_load_uac.xml with the call's length from -d, the gateways are
// proxy_uas.xml logging the Call-ID of each call they completed.
func reloadScenarios(t *testing.T) (uac, uas string) {
	t.Helper()
	edit := func(file, old, repl string) string {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("testdata/%s no longer has %q", file, old)
		}
		return strings.Replace(string(b), old, repl, 1)
	}
	uac = edit("cdr_load_uac.xml", `<pause milliseconds="200"/>`, `<pause/>`)
	uas = edit("proxy_uas.xml", `  <ResponseTimeRepartition`,
		"  <nop>\n    <action>\n      <log message=\"completed [call_id]\"/>\n    </action>\n  </nop>\n\n  <ResponseTimeRepartition")
	return uac, uas
}

// reloadFile is the configuration file of TestReloadUnderLoad; the
// test rewrites it field by field.
type reloadFile struct {
	sipPort, tcpPort int    // the UDP listener; a TCP one on tcpPort when addTCP
	addTCP           bool   // a listener added: needs a restart
	data, dns, api   string // data directory, DNS server, API listener
	level            string // log_level
	uacPort          int    // the caller's UDP port, trusted
	gw1, gw2         int    // the gateways' ports: groups "one" and "two"
	gateway          string // the group the rule forwards to
	moreTrusted      bool   // a network more in security.trusted and routing.trusted
	sourceCPM        int    // security.limits.source_calls_per_minute
	unknownKey       bool   // reloadUnknownKey at the top: the file is refused
}

func (f reloadFile) yaml() string {
	var b strings.Builder
	listen := fmt.Sprintf("%q", "udp:127.0.0.1:"+strconv.Itoa(f.sipPort))
	if f.addTCP {
		listen += fmt.Sprintf(", %q", "tcp:127.0.0.1:"+strconv.Itoa(f.tcpPort))
	}
	secTrusted := `[ "127.0.0.0/8", "::1/128" ]`
	routeTrusted := fmt.Sprintf("[ %q ]", "udp:127.0.0.1:"+strconv.Itoa(f.uacPort))
	if f.moreTrusted {
		// More trusted, the caller still among them.
		secTrusted = `[ "127.0.0.0/8", "::1/128", "10.0.0.0/8" ]`
		routeTrusted = fmt.Sprintf("[ %q, %q ]", "udp:127.0.0.1:"+strconv.Itoa(f.uacPort), "udp:192.0.2.10:5060")
	}
	fmt.Fprintf(&b, "listen: [ %s ]\n", listen)
	fmt.Fprintf(&b, "data: %q\n", f.data)
	b.WriteString("domain: [ example.test ]\n")
	fmt.Fprintf(&b, "log_level: %s\n", f.level)
	// As launch does with --max-queue-delay: the test is about reloads,
	// not about how fast a -race build answers.
	b.WriteString("max_queue_delay: 5s\n")
	fmt.Fprintf(&b, "dns: { servers: [ %q ] }\n", f.dns)
	fmt.Fprintf(&b, "api: { listen: %q }\n", f.api)
	// No STUN: its default socket is a fixed port (3478) other tests'
	// servers may hold.
	b.WriteString("stun: { enabled: false }\n")
	fmt.Fprintf(&b, "security:\n  trusted: %s\n  limits: { source_calls_per_minute: %d }\n", secTrusted, f.sourceCPM)
	fmt.Fprintf(&b, "routing:\n  trusted: %s\n", routeTrusted)
	fmt.Fprintf(&b, "  gateways:\n    one: [ { uri: \"sip:127.0.0.1:%d\" } ]\n    two: [ { uri: \"sip:127.0.0.1:%d\" } ]\n", f.gw1, f.gw2)
	fmt.Fprintf(&b, "  rules:\n    - { prefix: \"9\", action: forward, gateways: %s }\n", f.gateway)
	if f.unknownKey {
		fmt.Fprintf(&b, "%s: 1\n", reloadUnknownKey)
	}
	return b.String()
}

// write replaces the file at path whole (write and rename), so that a
// reload never reads half of it.
func (f reloadFile) write(t *testing.T, path string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(f.yaml()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// reloadSipp is one sipp process of TestReloadUnderLoad.
type reloadSipp struct {
	cmd                    *exec.Cmd
	out                    *outputBuffer
	done                   chan struct{}
	err                    error
	logFile, statFile, dir string
}

// startReloadSipp runs sipp with scenario (its text, written to a file)
// from 127.0.0.1:port, with its statistics, its <log> lines and its
// unexpected messages in files; the process is killed at the end of the
// test if it is still running.
func startReloadSipp(t *testing.T, scenario string, port int, args ...string) *reloadSipp {
	t.Helper()
	s := &reloadSipp{dir: t.TempDir(), out: &outputBuffer{limit: 1 << 20}, done: make(chan struct{})}
	sf := filepath.Join(s.dir, "scenario.xml")
	if err := os.WriteFile(sf, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	s.logFile, s.statFile = filepath.Join(s.dir, "calls.log"), filepath.Join(s.dir, "stat.csv")
	full := append([]string{"-sf", sf, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-nostdin",
		"-trace_logs", "-log_file", s.logFile, "-trace_stat", "-stf", s.statFile,
		"-trace_err", "-error_file", filepath.Join(s.dir, "errors.log")}, args...)
	s.cmd = exec.Command("sipp", full...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started sipp (pid %d) %s", s.cmd.Process.Pid, strings.Join(full, " "))
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *reloadSipp) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// quit asks a sipp that runs without -m to finish the calls it has and
// exit (SIGUSR1), and waits for it.
func (s *reloadSipp) quit(t *testing.T) {
	t.Helper()
	if s.running() {
		if err := s.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Errorf("SIGUSR1 to sipp (pid %d): %v", s.cmd.Process.Pid, err)
		}
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("sipp (pid %d) still running 10 s after SIGUSR1; killing it", s.cmd.Process.Pid)
		s.cmd.Process.Kill()
		<-s.done
	}
}

// checkStats requires sipp to have exited 0 with calls successful calls
// (any number when calls < 0) and not one failed, unexpected or timed-out
// message. It returns the successful calls.
func (s *reloadSipp) checkStats(t *testing.T, name string, calls int) int {
	t.Helper()
	stats, err := readSippStats(s.statFile)
	if err != nil {
		t.Errorf("%s: sipp statistics: %v", name, err)
		return 0
	}
	ok := s.err == nil
	for _, col := range []string{"FailedCall(C)", "FailedUnexpectedMessage(C)", "FailedMaxUDPRetrans(C)",
		"FailedTimeoutOnRecv(C)", "FailedTimeoutOnSend(C)", "FailedCannotSendMessage(C)", "FailedCallRejected(C)"} {
		if stats[col] != "0" {
			ok = false
			t.Errorf("%s: %s = %q, want 0", name, col, stats[col])
		}
	}
	done, _ := strconv.Atoi(stats["SuccessfulCall(C)"])
	if calls >= 0 && done != calls {
		ok = false
		t.Errorf("%s: %d successful calls, want %d", name, done, calls)
	}
	t.Logf("%s: exit %v, %d successful calls, retransmissions %s, out-of-call messages %s, dead-call messages %s",
		name, s.err, done, stats["Retransmissions(C)"], stats["OutOfCallMsgs(C)"], stats["DeadCallMsgs(C)"])
	if !ok {
		t.Errorf("%s: sipp exit %v", name, s.err)
		t.Logf("%s: sipp output (tail):\n%s", name, s.out.Tail(4000))
		if b, err := os.ReadFile(filepath.Join(s.dir, "errors.log")); err == nil {
			t.Logf("%s: sipp unexpected messages:\n%s", name, tail(string(b), 6000))
		}
	}
	return done
}

// completed returns the set of Call-IDs the scenario logged as
// "completed ID" (sippCompleted).
func (s *reloadSipp) completed(t *testing.T, name string) map[string]bool {
	t.Helper()
	ids, err := sippCompleted(t, s.logFile, name)
	if err != nil {
		t.Errorf("%s: %v", name, err)
	}
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set
}

// startReloadServer runs `hlas serve --config path` with nothing but the
// file, unlike launch: a flag would pin its key (--listen, --log-level)
// against every reload. It picks the free ports, writes f to path, waits
// for the SIP and the API listeners, and stops the server at the end of
// the test with the checks of server.stop.
func startReloadServer(t *testing.T, path string, f *reloadFile) *server {
	t.Helper()
	return startRetried(t, func() *server {
		t.Helper()
		ports := freePorts(t, 3)
		f.sipPort, f.tcpPort, f.api = ports[0], ports[1], net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
		f.write(t, path)
		s := &server{UDP4: net.JoinHostPort("127.0.0.1", strconv.Itoa(f.sipPort)),
			output: &outputBuffer{limit: 8 << 20}, exited: make(chan struct{})}
		s.cmd = exec.Command(hlasBin, "serve", "--config", path)
		if err := s.run(t, ": serve --config "+path+"\n"+f.yaml()); err != nil {
			t.Fatal(err)
		}
		return s
	}, func(s *server) error {
		if err := s.waitReady(readyTimeout); err != nil {
			return err
		}
		return waitAPIReady(s, f.api)
	})
}

// waitAPIReady polls GET /readyz on the API until it answers 200.
func waitAPIReady(s *server, api string) error {
	deadline := time.Now().Add(readyTimeout)
	c := &http.Client{Timeout: time.Second}
	for {
		res, err := c.Get("http://" + api + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if s.hasExited() {
			return fmt.Errorf("hlas exited: %v", s.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("API %s not ready within %v: %v", api, readyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reloadReportJSON is the answer of POST /api/v1/reload
// (server.ReloadReport).
type reloadReportJSON struct {
	Applied      []reloadChangeJSON `json:"applied"`
	NeedsRestart []reloadChangeJSON `json:"needs_restart"`
}

// reloadChangeJSON is one change of the report (server.Change).
type reloadChangeJSON struct{ Key, Old, New string }

// reloadKeys returns the changes' keys, sorted.
func reloadKeys(cs []reloadChangeJSON) []string {
	var ks []string
	for _, c := range cs {
		ks = append(ks, c.Key)
	}
	slices.Sort(ks)
	return ks
}

// reloadChange returns the change of key, or a zero one.
func reloadChange(cs []reloadChangeJSON, key string) reloadChangeJSON {
	for _, c := range cs {
		if c.Key == key {
			return c
		}
	}
	return reloadChangeJSON{}
}

// reloadAPI calls the API with the bearer token; it returns the status
// and the body.
func reloadAPI(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return res.StatusCode, body
}

// reloadCDR is the part of a record (GET /api/v1/cdrs) the test reads.
type reloadCDR struct {
	Kind       string `json:"kind"`
	Status     string `json:"status"`
	Code       int    `json:"code"`
	CallID     string `json:"call_id"`
	Start      string `json:"start"`
	EndedBy    string `json:"ended_by"`
	EndReason  string `json:"end_reason"`
	BranchAddr string `json:"branch_addr"`
}

// reloadCDRs reads every record through the API, page by page.
func reloadCDRs(t *testing.T, api, token string) []reloadCDR {
	t.Helper()
	var all []reloadCDR
	for offset := 0; ; {
		code, body := reloadAPI(t, http.MethodGet, fmt.Sprintf("http://%s/api/v1/cdrs?limit=1000&offset=%d", api, offset), token)
		if code != http.StatusOK {
			t.Fatalf("GET /api/v1/cdrs: %d %s", code, body)
		}
		var page struct {
			Items      []reloadCDR `json:"items"`
			NextOffset *int        `json:"next_offset"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("GET /api/v1/cdrs: %v\n%s", err, body)
		}
		all = append(all, page.Items...)
		if page.NextOffset == nil {
			return all
		}
		offset = *page.NextOffset
	}
}

// reloadWindow is a stretch of the load with one gateway in the rule:
// calls that start from after+reloadSlack until the next window's before
// must have gone to gateway.
type reloadWindow struct {
	before, after time.Time // around the reload that opened it; zero for the first
	gateway       string
}

// reloadedLine is the log line of one key a reload applied.
var reloadedLine = regexp.MustCompile(`msg="config reloaded" feature=server key=(\S+)`)

// cdrStartForm is how a record's start is written (acc's timeText).
const cdrStartForm = "2006-01-02T15:04:05.000Z07:00"

// TestReloadUnderLoad: reloadCalls calls through the proxy, trusted by
// address, forwarded by the rule for "9..." to gateway one or two, while
// the file changes six times: the rule's gateway every time (one, two,
// one, two, one, two), the log level, a call limit, the trusted networks,
// once a listener (needs a restart: reported, not applied) and once an
// unknown key (the reload is refused and nothing changes). Reloads go by
// POST /api/v1/reload and by SIGHUP in turn.
//
// Afterwards: sipp's caller and both gateways saw every call succeed
// (no failed call, unexpected message or retransmission timeout); there
// is one answered record per call; the records and the gateways' own
// logs agree on which gateway took which call, each gateway took calls,
// and each call went where the rules in force when it came said; the
// server logged no error but the refused file's, and exits cleanly.
func TestReloadUnderLoad(t *testing.T) {
	begin := time.Now()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	out, err := exec.Command(hlasBin, "api", "token", "add", "reload-test", "--data", data).Output()
	token := strings.TrimSpace(string(out))
	if err != nil || len(token) != 43 {
		t.Fatalf("hlas api token add: %v, printed %q", err, out)
	}

	ports := freePorts(t, 3)
	gw1Port, gw2Port, uacPort := ports[0], ports[1], ports[2]
	reloadUAC, reloadUAS := reloadScenarios(t)
	gw1 := startReloadSipp(t, reloadUAS, gw1Port)
	gw2 := startReloadSipp(t, reloadUAS, gw2Port)
	gwName := map[string]string{
		"udp:127.0.0.1:" + strconv.Itoa(gw1Port): "one",
		"udp:127.0.0.1:" + strconv.Itoa(gw2Port): "two",
	}

	path := filepath.Join(dir, "hlas.yaml")
	f := reloadFile{data: data, dns: emptyDNS(t), level: "info", uacPort: uacPort, gw1: gw1Port, gw2: gw2Port, gateway: "one"}
	s := startReloadServer(t, path, &f)
	// The gateways have had the server's start-up to bind.
	for _, g := range []*reloadSipp{gw1, gw2} {
		if !g.running() {
			t.Fatalf("gateway sipp exited: %v\n%s", g.err, g.out.String())
		}
	}

	uac := startReloadSipp(t, reloadUAC, uacPort, "-s", "9123456", "-m", strconv.Itoa(reloadCalls),
		"-r", strconv.Itoa(reloadRate), "-d", strconv.Itoa(int(reloadCallLength/time.Millisecond)),
		"-recv_timeout", "10s", "-timeout", "50s", "-timeout_error", s.UDP4)
	loadStart := time.Now()
	windows := []reloadWindow{{gateway: "one"}}
	event := 0
	// waitEvent sleeps until the next reload is due; the load must
	// still be running then.
	waitEvent := func() {
		t.Helper()
		time.Sleep(time.Until(loadStart.Add(reloadFirst + time.Duration(event)*reloadEvery)))
		event++
		if !uac.running() {
			t.Fatalf("reload %d: the load ended already: sipp exit %v\n%s", event, uac.err, uac.out.Tail(4000))
		}
		s.assertRunning(t)
	}
	apiURL := "http://" + f.api + "/api/v1/reload"
	// post reloads through the API, requires 200, and returns the report
	// and the time around the call.
	post := func() (reloadReportJSON, time.Time, time.Time) {
		t.Helper()
		before := time.Now()
		code, body := reloadAPI(t, http.MethodPost, apiURL, token)
		after := time.Now()
		var rep reloadReportJSON
		if code != http.StatusOK {
			t.Fatalf("reload %d: POST /api/v1/reload: %d %s", event, code, body)
		}
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatalf("reload %d: report %s: %v", event, body, err)
		}
		t.Logf("reload %d (POST, %v): %s", event, after.Sub(before).Round(time.Millisecond), body)
		return rep, before, after
	}
	// hup sends SIGHUP and waits until the server's log has one more
	// line containing marker; it returns the log written meanwhile and
	// the time around the reload.
	hup := func(marker string) (string, time.Time, time.Time) {
		t.Helper()
		seen := s.output.String()
		n := strings.Count(seen, marker)
		before := time.Now()
		if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatalf("reload %d: SIGHUP: %v", event, err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			now := s.output.String()
			if strings.Count(now, marker) > n {
				after := time.Now()
				t.Logf("reload %d (SIGHUP, %v)", event, after.Sub(before).Round(time.Millisecond))
				return now[min(len(seen), len(now)):], before, after
			}
			if time.Now().After(deadline) {
				t.Fatalf("reload %d: no %q in the log 10 s after SIGHUP:\n%s", event, marker, tail(now, 8000))
			}
		}
	}
	wantKeys := func(what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("reload %d: %s: keys %q, want %q", event, what, got, want)
		}
	}
	wantRuleSwitch := func(c reloadChangeJSON, from, to string) {
		t.Helper()
		if !strings.Contains(c.Old, "gateways: "+from) || !strings.Contains(c.New, "gateways: "+to) {
			t.Errorf("reload %d: routing.rules %q -> %q, want gateways %s -> %s", event, c.Old, c.New, from, to)
		}
	}
	const restartMarker = `msg="config change needs a restart" feature=server key=listen`

	// 1. POST: to gateway two, log level warn, a TCP listener added.
	waitEvent()
	f.gateway, f.level, f.addTCP = "two", "warn", true
	f.write(t, path)
	rep, before, after := post()
	windows = append(windows, reloadWindow{before, after, "two"})
	wantKeys("applied", reloadKeys(rep.Applied), "log_level", "routing.rules")
	wantKeys("needs_restart", reloadKeys(rep.NeedsRestart), "listen")
	wantRuleSwitch(reloadChange(rep.Applied, "routing.rules"), "one", "two")
	if c := reloadChange(rep.Applied, "log_level"); c.Old != "info" || c.New != "warn" {
		t.Errorf("reload 1: log_level %q -> %q, want info -> warn", c.Old, c.New)
	}
	tcp := "127.0.0.1:" + strconv.Itoa(f.tcpPort)
	if c := reloadChange(rep.NeedsRestart, "listen"); !strings.Contains(c.New, "tcp:"+tcp) || strings.Contains(c.Old, "tcp:") {
		t.Errorf("reload 1: listen %q -> %q, want the TCP listener %s added", c.Old, c.New, tcp)
	}
	// Reported, not applied: the server still has its one listener.
	if c, err := net.DialTimeout("tcp", tcp, time.Second); err == nil {
		c.Close()
		t.Errorf("reload 1: the new TCP listener %s accepts connections; a listener needs a restart", tcp)
	}

	// 2. SIGHUP, at level warn: back to gateway one, a call limit far
	// below the caller's rate (2400 a minute), which the caller, a
	// trusted peer, must not meet. The listener still needs a restart:
	// its WARN line says the reload ran.
	waitEvent()
	f.gateway, f.sourceCPM = "one", 60
	f.write(t, path)
	logged, before, after := hup(restartMarker)
	windows = append(windows, reloadWindow{before, after, "one"})
	if m := reloadedLine.FindAllString(logged, -1); len(m) > 0 {
		t.Errorf("reload 2: INFO lines at level warn: %q", m)
	}

	// 3. POST: gateway two, log level info, more trusted networks. The
	// report shows reload 2 took: the rule's old gateway is one, and the
	// limit, unchanged in the file since, is not reported.
	waitEvent()
	f.gateway, f.level, f.moreTrusted = "two", "info", true
	f.write(t, path)
	rep, before, after = post()
	windows = append(windows, reloadWindow{before, after, "two"})
	wantKeys("applied", reloadKeys(rep.Applied), "log_level", "routing.rules", "routing.trusted", "security.trusted")
	wantKeys("needs_restart", reloadKeys(rep.NeedsRestart), "listen")
	wantRuleSwitch(reloadChange(rep.Applied, "routing.rules"), "one", "two")
	if c := reloadChange(rep.Applied, "security.trusted"); !strings.Contains(c.New, "10.0.0.0/8") || strings.Contains(c.Old, "10.0.0.0/8") {
		t.Errorf("reload 3: security.trusted %q -> %q", c.Old, c.New)
	}
	if c := reloadChange(rep.Applied, "routing.trusted"); !strings.Contains(c.New, "udp:192.0.2.10:5060") ||
		!strings.Contains(c.New, "udp:127.0.0.1:"+strconv.Itoa(uacPort)) {
		t.Errorf("reload 3: routing.trusted %q -> %q", c.Old, c.New)
	}

	// 4. POST of a file with an unknown key that would also switch to
	// gateway one: refused, 400 naming the key; nothing changes (the
	// windows below require the calls after it to go on to gateway two).
	waitEvent()
	f.gateway, f.unknownKey = "one", true
	f.write(t, path)
	code, body := reloadAPI(t, http.MethodPost, apiURL, token)
	t.Logf("reload %d (POST, invalid): %d %s", event, code, body)
	if code != http.StatusBadRequest || !strings.Contains(string(body), reloadUnknownKey) {
		t.Errorf("reload 4: POST with an unknown key: %d %s, want 400 naming %s", code, body, reloadUnknownKey)
	}

	// 5. SIGHUP, at level info: the file fixed, gateway one, another
	// limit. Its log lines say what changed, from the values before 4.
	waitEvent()
	f.unknownKey, f.sourceCPM = false, 30
	f.write(t, path)
	logged, before, after = hup(`msg="config reload done" feature=server`)
	windows = append(windows, reloadWindow{before, after, "one"})
	var keys []string
	for _, m := range reloadedLine.FindAllStringSubmatch(logged, -1) {
		keys = append(keys, m[1])
	}
	slices.Sort(keys)
	wantKeys("logged", keys, "routing.rules", "security.limits.source_calls_per_minute")
	for _, line := range strings.Split(logged, "\n") {
		if strings.Contains(line, "key=routing.rules ") {
			if i, j := strings.Index(line, "gateways: two"), strings.Index(line, "gateways: one"); i < 0 || j < i {
				t.Errorf("reload 5: want the rule's gateway two -> one: %s", line)
			}
		}
		if strings.Contains(line, "key=security.limits.source_calls_per_minute ") && !strings.Contains(line, "old=60 new=30") {
			t.Errorf("reload 5: want the limit 60 -> 30: %s", line)
		}
	}
	if !strings.Contains(logged, restartMarker) || !strings.Contains(logged, "applied=2 needs_restart=1") {
		t.Errorf("reload 5: log:\n%s", logged)
	}

	// 6. POST: gateway two, nothing else.
	waitEvent()
	f.gateway = "two"
	f.write(t, path)
	rep, before, after = post()
	windows = append(windows, reloadWindow{before, after, "two"})
	wantKeys("applied", reloadKeys(rep.Applied), "routing.rules")
	wantKeys("needs_restart", reloadKeys(rep.NeedsRestart), "listen")
	wantRuleSwitch(reloadChange(rep.Applied, "routing.rules"), "one", "two")

	select {
	case <-uac.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("sipp caller did not finish:\n%s", uac.out.Tail(4000))
	}
	t.Logf("load done after %v", time.Since(loadStart).Round(time.Millisecond))
	s.assertRunning(t)
	gw1.quit(t)
	gw2.quit(t)

	// Every call succeeded on every side.
	uac.checkStats(t, "caller", reloadCalls)
	calls := uac.completed(t, "caller")
	if len(calls) != reloadCalls {
		t.Errorf("caller: %d calls completed, want %d", len(calls), reloadCalls)
	}
	took := map[string]map[string]bool{"one": gw1.completed(t, "gateway one"), "two": gw2.completed(t, "gateway two")}
	n1, n2 := gw1.checkStats(t, "gateway one", -1), gw2.checkStats(t, "gateway two", -1)
	if n1+n2 != reloadCalls || n1 == 0 || n2 == 0 {
		t.Errorf("gateways took %d + %d calls, want %d in all and some each", n1, n2, reloadCalls)
	}

	// One answered record per call, at the gateway that took it.
	recs := reloadCDRs(t, f.api, token)
	if len(recs) != reloadCalls {
		t.Errorf("%d records, want %d", len(recs), reloadCalls)
	}
	seen := map[string]bool{}
	perWindow := make([]int, len(windows))
	misrouted := 0
	for _, r := range recs {
		if r.Kind != "call" || r.Status != "answered" || r.Code != 200 || r.EndedBy != "caller" || r.EndReason != "bye" {
			t.Errorf("record %+v: want an answered call ended by the caller's BYE", r)
		}
		if seen[r.CallID] || !calls[r.CallID] {
			t.Errorf("record of call %s: twice, or not a call sipp completed", r.CallID)
		}
		seen[r.CallID] = true
		gw, ok := gwName[r.BranchAddr]
		if !ok {
			t.Errorf("call %s went to %q, not a gateway", r.CallID, r.BranchAddr)
			continue
		}
		if !took[gw][r.CallID] {
			t.Errorf("call %s: the record says gateway %s, which did not log it", r.CallID, gw)
		}
		start, err := time.Parse(cdrStartForm, r.Start)
		if err != nil {
			t.Errorf("call %s: start %q: %v", r.CallID, r.Start, err)
			continue
		}
		// The start is cut to the millisecond: the call came within the
		// millisecond after it.
		for i, w := range windows {
			if i > 0 && start.Before(w.after.Add(reloadSlack)) ||
				i+1 < len(windows) && !start.Add(time.Millisecond).Before(windows[i+1].before) {
				continue
			}
			perWindow[i]++
			if gw != w.gateway {
				if misrouted++; misrouted <= 10 {
					t.Errorf("call %s started at %s, in window %d (gateway %s), went to gateway %s", r.CallID, r.Start, i, w.gateway, gw)
				}
			}
		}
	}
	if misrouted > 0 {
		t.Errorf("%d calls went to the gateway of another window than their own", misrouted)
	}
	for i, n := range perWindow {
		if n == 0 {
			t.Errorf("window %d (gateway %s): no call started well inside it", i, windows[i].gateway)
		}
	}
	t.Logf("records: %d; gateway one %d calls, two %d; calls per window (clear of the reloads): %v", len(recs), n1, n2, perWindow)
	if len(calls) != reloadCalls {
		reloadLost(t, uac, calls, recs, took, windows, loadStart)
	}

	// No error in the server's log but the refused file's.
	var errLines []string
	for _, line := range strings.Split(s.output.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			errLines = append(errLines, line)
		}
	}
	if len(errLines) != 1 || !strings.Contains(errLines[0], `msg="config reload failed, the running configuration is kept"`) ||
		!strings.Contains(errLines[0], reloadUnknownKey) {
		t.Errorf("ERROR lines in the server's log: want the refused file's alone, got %d:\n%s", len(errLines), strings.Join(errLines, "\n"))
	}
	t.Logf("test took %v", time.Since(begin).Round(time.Millisecond))
}

// reloadLost logs, for a failed run, what became of each call the caller
// did not complete, beside the times of the reloads: sipp numbers its
// calls 1, 2, ... in its Call-IDs ("N-PID@127.0.0.1") and starts them at
// reloadRate a second.
func reloadLost(t *testing.T, uac *reloadSipp, calls map[string]bool, recs []reloadCDR, took map[string]map[string]bool,
	windows []reloadWindow, loadStart time.Time) {
	t.Helper()
	for i, w := range windows[1:] {
		t.Logf("reload into window %d (gateway %s): %v .. %v after the load started", i+1, w.gateway,
			w.before.Sub(loadStart).Round(time.Millisecond), w.after.Sub(loadStart).Round(time.Millisecond))
	}
	byID := map[string]reloadCDR{}
	for _, r := range recs {
		byID[r.CallID] = r
	}
	for n := 1; n <= reloadCalls; n++ {
		cid := fmt.Sprintf("%d-%d@127.0.0.1", n, uac.cmd.Process.Pid)
		if calls[cid] {
			continue
		}
		r, ok := byID[cid]
		t.Logf("call %s (due %v after the load started) not completed: record %v %+v, gateway one logged it %v, two %v",
			cid, time.Duration(n-1)*time.Second/reloadRate, ok, r, took["one"][cid], took["two"][cid])
	}
}
