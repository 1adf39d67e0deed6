package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCDRs runs the call detail record suite against every back end.
func TestCDRs(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { testCDRs(t, open(t)) })
	}
}

func testCDRs(t *testing.T, s Store) {
	ctx := context.Background()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	answered := CDR{ID: "r1", Kind: "call", Status: "answered", CallID: "c1@host", FromURI: "sip:alice@example.test",
		FromTag: "a1", ToURI: "sip:bob@example.test", ToTag: "b1", RequestURI: "sip:bob@example.test",
		Caller: "alice@example.test", Callee: "bob@example.test", User: "alice@example.test", Source: "udp:192.0.2.1:5060",
		UserAgent: "phone/1.0 'quoted' \"x\"", Start: t0.Add(123 * time.Millisecond), Answer: t0.Add(3 * time.Second),
		End: t0.Add(63 * time.Second), Duration: 60 * time.Second, Code: 200, Reason: "OK", Q850: 16,
		Q850Text: "Normal call clearing", EndedBy: "callee", EndReason: "bye", Branch: "sip:bob@192.0.2.2:5062",
		BranchAddr: "udp:192.0.2.2:5062"}
	busy := CDR{ID: "r2", Kind: "call", Status: "failed", CallID: "c2", Caller: "carol@example.test", Callee: "alice@other.test",
		Start: t0.Add(time.Minute), End: t0.Add(time.Minute + time.Second), Code: 486, Reason: "Busy Here", EndedBy: "callee", EndReason: "rejected"}
	cancelled := CDR{ID: "r3", Kind: "call", Status: "cancelled", CallID: "c3", Caller: "bob@example.test", Callee: "dave@example.test",
		Start: t0.Add(2 * time.Minute), End: t0.Add(2*time.Minute + time.Second), Code: 487, EndedBy: "caller", EndReason: "cancel"}
	reg := CDR{ID: "r4", Kind: "register", Status: "failed", CallID: "c4", Caller: "eve@example.test", Callee: "eve@example.test",
		Start: t0.Add(3 * time.Minute), End: t0.Add(3 * time.Minute), Code: 403}
	if err := s.WriteCDRs(ctx, []CDR{answered, busy}); err != nil {
		t.Fatal(err)
	}
	// A batch retried after an unclear commit keeps one row per record.
	if err := s.WriteCDRs(ctx, []CDR{busy, cancelled, reg}); err != nil {
		t.Fatal(err)
	}
	// A batch that fails leaves none of its rows: the valid record
	// ahead of the bad one is not written either.
	if err := s.WriteCDRs(ctx, []CDR{{ID: "r5", Kind: "call", CallID: "c5", Start: t0}, {CallID: "x"}}); err == nil {
		t.Fatal("a record without an ID was written")
	}
	all, err := s.CDRs(ctx, CDRFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("%d records, want 4", len(all))
	}
	got := all[0]
	if !got.Start.Equal(answered.Start) || !got.Answer.Equal(answered.Answer) || !got.End.Equal(answered.End) {
		t.Fatalf("times: %+v", got)
	}
	got.Start, got.Answer, got.End = answered.Start, answered.Answer, answered.End
	if got != answered {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, answered)
	}
	if !all[1].Answer.IsZero() {
		t.Fatalf("unanswered call has an answer time: %v", all[1].Answer)
	}
	for _, tc := range []struct {
		name string
		f    CDRFilter
		want []string
	}{
		{"since", CDRFilter{Since: t0.Add(time.Minute)}, []string{"r2", "r3", "r4"}},
		{"until", CDRFilter{Until: t0.Add(time.Minute)}, []string{"r1"}},
		{"user as AOR: authenticated user or caller", CDRFilter{User: "alice@example.test"}, []string{"r1"}},
		{"user part in any domain", CDRFilter{User: "alice"}, []string{"r1", "r2"}},
		{"status", CDRFilter{Status: "cancelled"}, []string{"r3"}},
		{"status code", CDRFilter{Status: "486"}, []string{"r2"}},
		{"kind", CDRFilter{Kind: "register"}, []string{"r4"}},
		{"limit", CDRFilter{Limit: 2}, []string{"r1", "r2"}},
		{"combined", CDRFilter{User: "bob", Status: "failed"}, nil},
	} {
		rs, err := s.CDRs(ctx, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if len(ids) != len(tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, ids, tc.want)
		}
		for i := range ids {
			if ids[i] != tc.want[i] {
				t.Fatalf("%s: %v, want %v", tc.name, ids, tc.want)
			}
		}
	}
}

// TestPurgeCDRs runs the retention purge suite against every back end.
func TestPurgeCDRs(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Run("boundary", func(t *testing.T) { testPurgeBoundary(t, s) })
			t.Run("more than one chunk", func(t *testing.T) { testPurgeChunks(t, s) })
			t.Run("index", func(t *testing.T) { testPurgeUsesIndex(t, s) })
		})
	}
}

// purgeCut is the cutoff of the purge tests, on a millisecond as the store
// keeps times.
var purgeCut = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func cdrIDs(t *testing.T, s Store) []string {
	t.Helper()
	rs, err := s.CDRs(context.Background(), CDRFilter{})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(rs))
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func clearCDRs(t *testing.T, s Store) {
	t.Helper()
	if _, err := sqlOf(s).db.Exec(`DELETE FROM hlas_cdrs`); err != nil {
		t.Fatal(err)
	}
}

// checkPurge counts, then purges at cut, expecting want records gone and
// keep (sorted) left.
func checkPurge(t *testing.T, s Store, cut time.Time, want int64, keep []string) {
	t.Helper()
	ctx := context.Background()
	count := func() (n int) {
		t.Helper()
		if err := sqlOf(s).db.QueryRow(`SELECT count(*) FROM hlas_cdrs`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	n, err := s.PurgeableCDRs(ctx, cut)
	if err != nil || n != want {
		t.Fatalf("PurgeableCDRs = %d, %v; want %d", n, err, want)
	}
	if got := count(); got != before {
		t.Fatalf("the dry run deleted records: %d left of %d", got, before)
	}
	if n, err = s.PurgeCDRs(ctx, cut); err != nil || n != want {
		t.Fatalf("PurgeCDRs = %d, %v; want %d", n, err, want)
	}
	if got := cdrIDs(t, s); !slices.Equal(got, keep) {
		t.Fatalf("left %v, want %v", got, keep)
	}
	if n, err = s.PurgeCDRs(ctx, cut); err != nil || n != 0 {
		t.Fatalf("second PurgeCDRs = %d, %v; want 0", n, err)
	}
}

// testPurgeBoundary: a record goes when it completed (End, or Start
// without an End) strictly before the cutoff.
func testPurgeBoundary(t *testing.T, s Store) {
	clearCDRs(t, s)
	cut, ms := purgeCut, time.Millisecond
	recs := []CDR{
		{ID: "ended-before", Start: cut.Add(-2 * time.Hour), Answer: cut.Add(-2 * time.Hour), End: cut.Add(-ms)},
		{ID: "ended-at", Start: cut.Add(-time.Hour), End: cut},
		// Started long before the cutoff, ended after it: kept, the
		// call's end is what counts.
		{ID: "ended-after", Start: cut.Add(-5 * time.Hour), Answer: cut.Add(-5 * time.Hour), End: cut.Add(ms)},
		{ID: "no-end-before", Start: cut.Add(-ms)},
		{ID: "no-end-at", Start: cut},
		{ID: "no-end-after", Start: cut.Add(time.Hour)},
	}
	for i := range recs {
		recs[i].Kind, recs[i].Status, recs[i].CallID = "call", "answered", recs[i].ID
	}
	if err := s.WriteCDRs(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	// The zero time is before every record: nothing goes.
	if n, err := s.PurgeCDRs(context.Background(), time.Time{}); err != nil || n != 0 {
		t.Fatalf("PurgeCDRs(zero time) = %d, %v; want 0", n, err)
	}
	checkPurge(t, s, cut, 2, []string{"ended-after", "ended-at", "no-end-after", "no-end-at"})
	checkPurge(t, s, cut.Add(ms), 2, []string{"ended-after", "no-end-after"})
}

// testPurgeChunks purges more records than one statement deletes, with
// the real chunk size and with a small one that the old records fill
// exactly (the loop must stop after an empty chunk, not miss the last).
func testPurgeChunks(t *testing.T, s Store) {
	ctx := context.Background()
	clearCDRs(t, s)
	write := func(old, young int) []string {
		recs := make([]CDR, 0, old+young)
		var keep []string
		for i := range old + young {
			r := CDR{ID: fmt.Sprintf("%06d", i), Kind: "call", Status: "failed", CallID: "c", Start: purgeCut.Add(-time.Hour)}
			r.End = purgeCut.Add(-time.Duration(i+1) * time.Millisecond)
			if i >= old {
				r.End = purgeCut.Add(time.Duration(i) * time.Millisecond)
				keep = append(keep, r.ID)
			}
			recs = append(recs, r)
		}
		if err := s.WriteCDRs(ctx, recs); err != nil {
			t.Fatal(err)
		}
		return keep
	}
	keep := write(cdrPurgeChunk+7, 3)
	checkPurge(t, s, purgeCut, cdrPurgeChunk+7, keep)

	clearCDRs(t, s)
	keep = write(6, 2)
	n, err := sqlOf(s).purgeCDRs(ctx, purgeCut, 3, 0)
	if err != nil || n != 6 {
		t.Fatalf("purge in chunks of 3 = %d, %v; want 6", n, err)
	}
	if got := cdrIDs(t, s); !slices.Equal(got, keep) {
		t.Fatalf("left %v, want %v", got, keep)
	}

	// Cancelled while it pauses between chunks: the chunk already
	// deleted stays deleted and is counted, with the context's error.
	clearCDRs(t, s)
	keep = write(6, 2)
	cctx, cancel := context.WithCancel(ctx)
	go func() { // cancel once the first chunk is gone, during the pause
		defer cancel()
		for cctx.Err() == nil {
			var left int
			if err := sqlOf(s).db.QueryRowContext(cctx, "SELECT count(*) FROM hlas_cdrs").Scan(&left); err == nil && left == 5 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	n, err = sqlOf(s).purgeCDRs(cctx, purgeCut, 3, time.Hour)
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Fatalf("purge cancelled in its pause = %d, %v; want 3 and context.Canceled", n, err)
	}
	if got := cdrIDs(t, s); len(got) != 5 {
		t.Fatalf("left %v, want the 3 old records of the second chunk and the 2 young ones", got)
	}
}

// testPurgeUsesIndex checks that the purge and its count find old records
// through the hlas_cdrs_completed index, not by reading the whole table
// (PostgreSQL is told to avoid sequential scans: on a table this small it
// would rightly prefer one).
func testPurgeUsesIndex(t *testing.T, s Store) {
	ctx := context.Background()
	ss := sqlOf(s)
	conn, err := ss.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	explain := "EXPLAIN QUERY PLAN "
	if ss.name == "postgres" {
		explain = "EXPLAIN "
		if _, err := conn.ExecContext(ctx, "SET enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
		defer conn.ExecContext(ctx, "RESET enable_seqscan")
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{qPurgeCDRs, []any{purgeCut.UnixMilli(), cdrPurgeChunk}},
		{qCountPurgeableCDRs, []any{purgeCut.UnixMilli()}},
	} {
		rows, err := conn.QueryContext(ctx, ss.rebind(explain+q.sql), q.args...)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var plan strings.Builder
		for rows.Next() {
			vals := make([]any, len(cols))
			for i := range vals {
				vals[i] = new(any)
			}
			if err := rows.Scan(vals...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprint(&plan, *(v.(*any)), " ")
			}
			plan.WriteString("\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		t.Logf("%s\n%s", q.sql, plan.String())
		if !strings.Contains(plan.String(), "hlas_cdrs_completed") {
			t.Errorf("%s\ndoes not use hlas_cdrs_completed:\n%s", q.sql, plan.String())
		}
	}
}

// TestPurgeIndexAddedToOldDatabase: a database made before retention
// existed (no hlas_cdrs_completed) gets the index when it is opened.
func TestPurgeIndexAddedToOldDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	db := sqlOf(s).db
	if _, err := db.Exec(`DROP INDEX hlas_cdrs_completed`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(ctx, Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	if err := sqlOf(s).db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'hlas_cdrs_completed'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("index after reopening: %d, %v", n, err)
	}
}
