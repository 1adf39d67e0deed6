package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
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
			Start: start, Answer: start, End: start.Add(30 * time.Second), Duration: 30 * time.Second, Code: 200, EndedBy: "caller", EndReason: "bye",
			MediaRelayed: true, MediaStreams: 1, CallerPackets: 1500, CallerBytes: 258000, CallerLost: 3, CallerJitterMS: 4.5,
			CalleePackets: 1498, CalleeBytes: 257656, CalleeDropped: 2},
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
		{[]string{"cdr", "list", "--data", dir}, 0, []string{"START", "c1", "c2", "30.000s", "MEDIA", "1500/1498 pkts 3/0 lost"}, 3},
		{[]string{"cdr", "list", "--status", "486", "--data", dir}, 0, []string{"c2"}, 2},
		{[]string{"cdr", "list", "--user", "alice", "--data", dir, "--since", "1h"}, 0, []string{"c1"}, 2},
		{[]string{"cdr", "list", "--data", dir, "--until", "2000-01-01"}, 0, nil, 1},
		{[]string{"cdr", "export", "--data", dir, "--format", "json"}, 0, []string{`"call_id":"c1"`, `"duration":30`,
			`"media_relayed":true,"media_streams":1,"caller_packets":1500,"caller_bytes":258000,"caller_dropped":0,` +
				`"caller_lost":3,"caller_jitter_ms":4.5,"callee_packets":1498,"callee_bytes":257656,"callee_dropped":2,` +
				`"callee_lost":0,"callee_jitter_ms":0}`, `"media_relayed":false`}, 2},
		{[]string{"cdr", "export", "--format", "csv", "--data", dir}, 0, []string{"id,kind,status",
			",media_relayed,media_streams,caller_packets,", ",true,1,1500,258000,0,3,4.5,1498,257656,2,0,0\n",
			",false,0,0,0,0,0,0,0,0,0,0,0\n"}, 3},
		{[]string{"cdr", "export", "--format", "xml", "--data", dir}, 2, nil, 0},
		{[]string{"cdr", "list", "--status", "busy", "--data", dir}, 2, nil, 0},
		{[]string{"cdr", "list", "--since", "yesterday", "--data", dir}, 2, nil, 0},
		{[]string{"cdr"}, 2, nil, 0},
		// A store that cannot be opened: a data directory that is a file.
		{[]string{"cdr", "list", "--data", filepath.Join(dir, "hlas.db")}, 1, nil, 0},
		{[]string{"cdr", "purge", "--older-than", "1h", "--data", filepath.Join(dir, "hlas.db")}, 1, nil, 0},
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

func TestCDRPurgeCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := st.WriteCDRs(ctx, []store.CDR{
		{ID: "old", Kind: "call", Status: "failed", CallID: "old", Start: now.Add(-50 * time.Hour), End: now.Add(-49 * time.Hour)},
		{ID: "no-end", Kind: "call", Status: "failed", CallID: "no-end", Start: now.Add(-72 * time.Hour)},
		{ID: "day", Kind: "call", Status: "answered", CallID: "day", Start: now.Add(-50 * time.Hour), End: now.Add(-23 * time.Hour)},
		{ID: "new", Kind: "call", Status: "answered", CallID: "new", Start: now.Add(-time.Minute), End: now.Add(-30 * time.Second)},
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	left := func() string {
		t.Helper()
		st, err := store.Open(ctx, store.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		recs, err := st.CDRs(ctx, store.CDRFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		return strings.Join(ids, " ")
	}
	config := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(config, []byte("data: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // stdout's beginning
		left string // records left after, oldest first
	}{
		{"neither --before nor --older-than", []string{"--data", dir}, 2, "", "no-end day old new"},
		{"both", []string{"--before", "1h", "--older-than", "1h", "--data", dir}, 2, "", "no-end day old new"},
		{"negative duration", []string{"--older-than", "-1h", "--data", dir}, 2, "", "no-end day old new"},
		{"zero duration", []string{"--older-than", "0s", "--data", dir}, 2, "", "no-end day old new"},
		{"days are not a Go duration", []string{"--older-than", "3d", "--data", dir}, 2, "", "no-end day old new"},
		{"bad time", []string{"--before", "yesterday", "--data", dir}, 2, "", "no-end day old new"},
		// A filter of list would purge everything if it were ignored.
		{"list's filters refused", []string{"--older-than", "1h", "--user", "alice", "--data", dir}, 2, "", "no-end day old new"},
		{"positional argument", []string{"--older-than", "1h", "old", "--data", dir}, 2, "", "no-end day old new"},
		{"dry run", []string{"--older-than", "48h", "--dry-run", "--data", dir}, 0, "2 records would be deleted", "no-end day old new"},
		{"older than", []string{"--data", dir, "--older-than", "48h"}, 0, "2 records deleted", "day new"},
		{"nothing that old", []string{"--before", "2000-01-01", "--data", dir}, 0, "0 records deleted", "day new"},
		{"dry run through --config", []string{"--config", config, "--dry-run", "--before", now.Add(-time.Hour).Format(time.RFC3339)}, 0,
			"1 record would be deleted", "day new"},
		{"before", []string{"--before", now.Add(-time.Hour).Format(time.RFC3339), "--data", dir}, 0, "1 record deleted", "new"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"cdr", "purge"}, tc.args...), &out, &errb)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d (%s)", tc.name, code, tc.code, errb.String())
		}
		if !strings.HasPrefix(out.String(), tc.out) || (tc.out == "") != (out.Len() == 0) {
			t.Errorf("%s: stdout %q, want %q...", tc.name, out.String(), tc.out)
		}
		if tc.code != 0 && errb.Len() == 0 {
			t.Errorf("%s: no error message", tc.name)
		}
		if got := left(); got != tc.left {
			t.Fatalf("%s: left %q, want %q", tc.name, got, tc.left)
		}
	}
}

// TestListCDRsMediaColumn: list's MEDIA column sums up a relayed call and
// marks one whose media was not relayed.
func TestListCDRsMediaColumn(t *testing.T) {
	start := time.Now()
	var out bytes.Buffer
	if err := listCDRs(&out, []store.CDR{
		{Kind: "call", Status: "answered", CallID: "relayed", Start: start, EndReason: "bye", MediaRelayed: true,
			CallerPackets: 10, CalleePackets: 0, CallerLost: 0, CalleeLost: 7},
		{Kind: "call", Status: "failed", CallID: "direct", Start: start, EndReason: "rejected"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^START .* MEDIA +CALL-ID$`, `(?m) bye +10/0 pkts 0/7 lost +relayed$`, `(?m) rejected +- +direct$`} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("no match for %s in\n%s", re, out.String())
		}
	}
}
