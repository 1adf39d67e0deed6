//go:build interop

package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCDRBaresip: baresip calls through `hlas serve` (its outbound proxy)
// to `hlas ua answer` phones: one call answered and hung up by baresip
// when it quits, one refused busy. The records say what happened: code,
// who hung up, baresip's User-Agent.
func TestCDRBaresip(t *testing.T) {
	t.Parallel() // waits on timers and peers, not the CPU: runs beside the others
	bob, answer := uaPhone(t, "bob@example.test", "--max-calls", "1")
	busy, busyContact := uaPhone(t, "busy@example.test", "--code", "486", "--max-calls", "1")
	s, data := cdrServer(t, fmt.Sprintf("  locations:\n    bob@example.test: [ %q ]\n    busy@example.test: [ %q ]\n",
		answer, busyContact))
	// baresip's account: alice, every request through hlas.
	caller := func(t *testing.T) string {
		dir := baresipConfig(t, uaListenAddr(t))
		account := fmt.Sprintf("<sip:alice@example.test>;outbound=\"sip:%s\";regint=0;answermode=auto;"+
			"audio_codecs=PCMU/8000/1,PCMA/8000/1\n", s.UDP4)
		if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	// baresip dials at once and quits (hanging up) after 4 s.
	start := time.Now()
	out, done := startBaresip(t, caller(t), 4*time.Second, "/dial sip:bob@example.test")
	if err := <-done; err != nil {
		t.Errorf("baresip: %v", err)
	}
	quit := time.Since(start)
	if bs := out.String(); !strings.Contains(bs, "Call established") {
		t.Fatalf("baresip did not get through:\n%s", tail(bs, 4000))
	}
	bob.wait(t, 30*time.Second)
	if o := bob.output.String(); !strings.Contains(o, "call established") || !strings.Contains(o, "<- BYE") {
		t.Fatalf("bob:\n%s", o)
	}

	out, done = startBaresip(t, caller(t), 2*time.Second, "/dial sip:busy@example.test")
	if err := <-done; err != nil {
		t.Errorf("baresip: %v", err)
	}
	if bs := out.String(); !strings.Contains(bs, "486 Busy Here") {
		t.Fatalf("baresip did not see the 486:\n%s", tail(bs, 4000))
	}
	busy.wait(t, 30*time.Second)

	recs := cdrExport(t, data)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %v", len(recs), recs)
	}
	t.Logf("records: %v", recs)
	for _, r := range recs {
		if r["kind"] != "call" || r["caller"] != "alice@example.test" || r["user"] != "" ||
			!strings.HasPrefix(fmt.Sprint(r["user_agent"]), "baresip") || !strings.HasPrefix(fmt.Sprint(r["source"]), "udp:127.0.0.1:") {
			t.Errorf("record %v", r)
		}
	}
	if r := recs[0]; r["callee"] != "bob@example.test" || r["status"] != "answered" || r["code"] != float64(200) ||
		r["ended_by"] != "caller" || r["end_reason"] != "bye" || r["branch"] != answer {
		t.Errorf("answered call: %v", r)
	} else if d, _ := r["duration"].(float64); d < 1 || d > quit.Seconds() {
		t.Errorf("answered call lasted %vs; baresip quit after %v: %v", d, quit, r)
	}
	if r := recs[1]; r["callee"] != "busy@example.test" || r["status"] != "failed" || r["code"] != float64(486) ||
		r["ended_by"] != "callee" || r["end_reason"] != "rejected" || r["answer"] != nil || r["to_tag"] == "" {
		t.Errorf("busy call: %v", r)
	}
}
