//go:build interop

package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Accounting (issue 7) seen from outside: calls between `hlas ua` phones
// through `hlas serve`, the records read back with `hlas cdr`.

// cdrServer starts `hlas serve` with routing (YAML under "routing:") and
// its data in a directory of the test's, which it returns.
func cdrServer(t *testing.T, routing string) (*server, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "hlas.yaml")
	cfg := "domain: [ example.test ]\nt1: 100ms\nauth: { open_domains: [ \"*\" ] }\naccounting: { messages: true }\nrouting:\n" + routing
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	return startServerWith(t, serverConfig{args: []string{"--config", path, "--data", data}}), data
}

// cdrKillable starts `hlas serve` like cdrServer, but the test may kill
// it: nothing checks for a clean exit.
func cdrKillable(t *testing.T, routing string) (*server, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "hlas.yaml")
	cfg := "domain: [ example.test ]\nt1: 100ms\nauth: { open_domains: [ \"*\" ] }\nrouting:\n" + routing
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	for attempt := 0; ; attempt++ {
		s, err := launch(t, serverConfig{args: []string{"--config", path, "--data", data}})
		if err != nil {
			t.Fatal(err)
		}
		if err = s.waitReady(readyTimeout); err == nil {
			t.Cleanup(s.kill)
			return s, data
		}
		s.kill()
		if attempt == 2 || !strings.Contains(s.output.String(), "address already in use") {
			t.Fatalf("hlas did not become ready: %v\n%s", err, s.output.Tail(maxLoggedOutput))
		}
	}
}

// cdrExport runs `hlas cdr export --format json` on data.
func cdrExport(t *testing.T, data string, filters ...string) []map[string]any {
	t.Helper()
	out, err := exec.Command(hlasBin, append([]string{"cdr", "export", "--data", data, "--format", "json"}, filters...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("hlas cdr export: %v\n%s", err, out)
	}
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestCDRSurvivesSIGKILL: the server is killed the moment the caller has
// the BYE's 200; the record of that call is on disk.
func TestCDRSurvivesSIGKILL(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	for i := range 3 {
		t.Run(fmt.Sprint("attempt ", i+1), func(t *testing.T) {
			_, contact := uaPhone(t, "bob@example.test", "--max-calls", "1")
			s, data := cdrKillable(t, fmt.Sprintf("  locations:\n    bob@example.test: [ %q ]\n", contact))
			p := startUA(t, false, "call", "--user", "alice@example.test", "--server", s.UDP4, "--t1", "100ms",
				"--duration", "300ms", "sip:bob@example.test")
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(p.output.String(), "<- 200 OK (BYE)") {
				if time.Now().After(deadline) {
					t.Fatalf("no 200 for the BYE:\n%s", p.output.String())
				}
				time.Sleep(200 * time.Microsecond)
			}
			s.kill()
			<-s.exited
			out, err := exec.Command(hlasBin, "cdr", "list", "--data", data, "--status", "answered").CombinedOutput()
			if err != nil {
				t.Fatalf("hlas cdr list: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 2 || !strings.Contains(lines[1], "alice@example.test") || !strings.Contains(lines[1], "caller") ||
				!strings.Contains(lines[1], "bye") {
				t.Fatalf("after SIGKILL, hlas cdr list:\n%s", out)
			}
		})
	}
}

// TestCDRExport: calls of each kind; the exported records say what
// happened on the wire.
func TestCDRExport(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	_, answer := uaPhone(t, "answer@example.test")
	_, busy := uaPhone(t, "busy@example.test", "--code", "486")
	_, ring := uaPhone(t, "ring@example.test", "--ring", "30s")
	_, slow := uaPhone(t, "slow@example.test", "--ring", "30s")
	s, data := cdrServer(t, fmt.Sprintf("  timer_c: 1s\n  locations:\n    answer@example.test: [ %q ]\n    busy@example.test: [ %q ]\n"+
		"    ring@example.test: [ %q ]\n    slow@example.test: [ %q ]\n", answer, busy, ring, slow))
	call := func(target string, flags ...string) string {
		args := append([]string{"call", "--user", "alice@example.test", "--server", s.UDP4, "--t1", "100ms",
			"--duration", "500ms"}, flags...)
		p := startUA(t, false, append(args, target)...)
		p.wait(t, 60*time.Second)
		return p.output.String()
	}
	type want struct {
		callee, status, endedBy, endReason string
		code                               int
	}
	var wants []want
	for range 2 {
		if out := call("sip:answer@example.test"); !strings.Contains(out, "<- 200 OK (BYE)") {
			t.Fatalf("answered call:\n%s", out)
		}
		wants = append(wants, want{"answer@example.test", "answered", "caller", "bye", 200})
	}
	if out := call("sip:busy@example.test"); !strings.Contains(out, "<- 486 Busy Here") {
		t.Fatalf("busy call:\n%s", out)
	}
	wants = append(wants, want{"busy@example.test", "failed", "callee", "rejected", 486})
	if out := call("sip:ring@example.test", "--timeout", "500ms"); !strings.Contains(out, "<- 487 Request Terminated") {
		t.Fatalf("cancelled call:\n%s", out)
	}
	wants = append(wants, want{"ring@example.test", "cancelled", "caller", "cancel", 487})
	if out := call("sip:slow@example.test"); !strings.Contains(out, "<- 408 Request Timeout") {
		t.Fatalf("unanswered call:\n%s", out)
	}
	wants = append(wants, want{"slow@example.test", "failed", "proxy", "timeout", 408})

	recs := cdrExport(t, data)
	if len(recs) != len(wants) {
		t.Fatalf("%d records, want %d: %v", len(recs), len(wants), recs)
	}
	for i, w := range wants {
		r := recs[i]
		if r["kind"] != "call" || r["callee"] != w.callee || r["status"] != w.status || r["ended_by"] != w.endedBy ||
			r["end_reason"] != w.endReason || r["code"] != float64(w.code) || r["caller"] != "alice@example.test" {
			t.Errorf("record %d = %v, want %+v", i, r, w)
		}
		if w.status == "answered" {
			if d, _ := r["duration"].(float64); d < 0.4 || d > 5 || r["branch"] == "" || r["answer"] == nil {
				t.Errorf("answered call %d: %v", i, r)
			}
		}
	}
	if n := len(cdrExport(t, data, "--status", "failed")); n != 2 {
		t.Errorf("--status failed: %d records", n)
	}
	if n := len(cdrExport(t, data, "--user", "answer")); n != 2 {
		t.Errorf("--user answer: %d records", n)
	}
	out, err := exec.Command(hlasBin, "cdr", "export", "--data", data, "--format", "csv").CombinedOutput()
	if err != nil || strings.Count(string(out), "\n") != len(wants)+1 || !strings.HasPrefix(string(out), "id,kind,status,") {
		t.Errorf("CSV export (%v):\n%s", err, out)
	}
}
