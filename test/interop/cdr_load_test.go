//go:build interop

package interop

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCDRLoadSIGKILL: sipp calls through `hlas serve` (stateful,
// record-routing) to sipp at a steady 30 calls per second, and the
// server is SIGKILLed mid-load. Every call whose BYE sipp saw answered
// 200 (its Call-ID logged by testdata/cdr_load_uac.xml) has its record
// in the store the server left behind, and no call has two.
func TestCDRLoadSIGKILL(t *testing.T) {
	const (
		rate     = 30
		calls    = 300 // 10 s of calls at the rate; the server dies after 4 s
		killWhen = 4 * time.Second
	)
	uas, port := startSipp(t, "127.0.0.1", "-sf", "proxy_uas.xml", "-timeout", "90s")
	time.Sleep(300 * time.Millisecond) // sipp binds
	s, data := cdrKillable(t, fmt.Sprintf("  locations:\n    bob@example.test: [ \"sip:bob@127.0.0.1:%d\" ]\n", port))
	logFile := filepath.Join(t.TempDir(), "completed.log")
	// After the kill the calls in flight, and those sipp still starts,
	// fail at the receive timeout; sipp then ends with failed calls.
	uac, _ := startSipp(t, "127.0.0.1", "-sf", "cdr_load_uac.xml", "-s", "bob", "-m", fmt.Sprint(calls),
		"-r", fmt.Sprint(rate), "-recv_timeout", "2s", "-timeout", "90s", "-trace_logs", "-log_file", logFile, s.UDP4)
	time.Sleep(killWhen)
	if s.hasExited() {
		t.Fatalf("hlas exited before the kill: %v\n%s", s.err, s.output.Tail(maxLoggedOutput))
	}
	s.kill()
	t.Logf("hlas killed after %v", killWhen)
	select {
	case err := <-uac.done:
		t.Logf("sipp uac exited: %v", err) // failed calls after the kill: non-zero
	case <-time.After(2 * time.Minute):
		t.Fatal("sipp uac did not end")
	}
	_ = uas.cmd.Process.Kill()

	completed, err := sippCompleted(t, logFile, "caller")
	if err != nil {
		t.Fatal(err)
	}
	// Calls up to the kill completed; those after it cannot have.
	if len(completed) < 2*rate || len(completed) > (int(killWhen/time.Second)+1)*rate {
		t.Fatalf("%d calls completed; the server was to die mid-load after %v at %d calls/s\nsipp:\n%s",
			len(completed), killWhen, rate, tail(uac.out.String(), 4000))
	}
	recs := cdrExport(t, data)
	byCallID := map[string]map[string]any{}
	ids := map[string]bool{}
	for _, r := range recs {
		id, _ := r["id"].(string)
		if ids[id] {
			t.Errorf("record ID %s twice", id)
		}
		ids[id] = true
		cid, _ := r["call_id"].(string)
		if prev, dup := byCallID[cid]; dup {
			t.Errorf("two records for call %s:\n%v\n%v", cid, prev, r)
		}
		byCallID[cid] = r
	}
	missing := 0
	for _, cid := range completed {
		r, ok := byCallID[cid]
		if !ok {
			missing++
			t.Errorf("call %s completed (BYE answered 200) but has no record", cid)
			continue
		}
		if r["status"] != "answered" || r["code"] != float64(200) || r["ended_by"] != "caller" || r["end_reason"] != "bye" ||
			r["callee"] != "bob@example.test" || r["caller"] != "sipp@example.test" {
			t.Errorf("call %s: record %v", cid, r)
		}
	}
	t.Logf("%d calls completed before the kill, %d records, %d missing", len(completed), len(recs), missing)
}

// sippCompleted reads the Call-IDs a sipp scenario logged as "completed
// ID" to path (cdr_load_uac.xml, the reload test's scenarios), in order; a
// Call-ID logged twice fails the test, as name's.
func sippCompleted(t *testing.T, path, name string) ([]string, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sipp's log of completed calls: %w", err)
	}
	defer f.Close()
	var ids []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cid, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "completed ")
		if !ok {
			continue
		}
		if seen[cid] {
			t.Errorf("%s: call %s logged twice", name, cid)
		}
		seen[cid] = true
		ids = append(ids, cid)
	}
	return ids, sc.Err()
}
