package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/store"
)

func TestCDRCommand(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute)
	if err := st.WriteCDRs(context.Background(), []store.CDR{
		{ID: "1", Kind: "call", Status: "answered", CallID: "c1", Caller: "alice@example.test", Callee: "bob@example.test",
			Start: start, Answer: start, End: start.Add(30 * time.Second), Duration: 30 * time.Second, Code: 200, EndedBy: "caller", EndReason: "bye"},
		{ID: "2", Kind: "call", Status: "failed", CallID: "c2", Caller: "bob@example.test", Callee: "carol@example.test",
			Start: start.Add(time.Second), End: start.Add(2 * time.Second), Code: 486, EndedBy: "callee", EndReason: "rejected"},
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, tc := range []struct {
		args []string
		code int
		want []string // substrings of stdout
		n    int      // lines of stdout
	}{
		{[]string{"cdr", "list", "--data", dir}, 0, []string{"START", "c1", "c2", "30.000s"}, 3},
		{[]string{"cdr", "list", "--status", "486", "--data", dir}, 0, []string{"c2"}, 2},
		{[]string{"cdr", "list", "--user", "alice", "--data", dir, "--since", "1h"}, 0, []string{"c1"}, 2},
		{[]string{"cdr", "list", "--data", dir, "--until", "2000-01-01"}, 0, nil, 1},
		{[]string{"cdr", "export", "--data", dir, "--format", "json"}, 0, []string{`"call_id":"c1"`, `"duration":30`}, 2},
		{[]string{"cdr", "export", "--format", "csv", "--data", dir}, 0, []string{"id,kind,status"}, 3},
		{[]string{"cdr", "export", "--format", "xml", "--data", dir}, 2, nil, 0},
		{[]string{"cdr", "list", "--status", "busy", "--data", dir}, 2, nil, 0},
		{[]string{"cdr", "list", "--since", "yesterday", "--data", dir}, 2, nil, 0},
		{[]string{"cdr"}, 2, nil, 0},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != tc.code {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args, code, tc.code, errb.String())
			continue
		}
		if n := strings.Count(out.String(), "\n"); tc.code == 0 && n != tc.n {
			t.Errorf("%v: %d lines, want %d:\n%s", tc.args, n, tc.n, out.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: no %q in\n%s", tc.args, w, out.String())
			}
		}
	}
}
