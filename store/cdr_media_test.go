package store

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

// TestCDRMedia runs the media relay statistics suite against every back
// end.
func TestCDRMedia(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("round trip", func(t *testing.T) { testCDRMediaRoundTrip(t, open(t)) })
			t.Run("columns added to an old table", func(t *testing.T) { testCDRMediaMigration(t, open(t)) })
		})
	}
}

// relayedCDR is an answered call whose media went through the relay,
// with counters beyond 32 bits.
func relayedCDR(id string, start time.Time) CDR {
	return CDR{ID: id, Kind: "call", Status: "answered", CallID: "media-" + id, Caller: "alice@example.test",
		Callee: "bob@example.test", Start: start, Answer: start.Add(time.Second), End: start.Add(time.Hour),
		Duration: time.Hour - time.Second, Code: 200, EndedBy: "caller", EndReason: "bye",
		MediaRelayed: true, MediaStreams: 2,
		CallerPackets: 180_000, CallerBytes: 5_000_000_000, CallerDropped: 7, CallerLost: 12, CallerJitterMS: 3.25,
		CalleePackets: 179_500, CalleeBytes: 4_999_000_123, CalleeDropped: 0, CalleeLost: -2, CalleeJitterMS: 41.5}
}

// sameCDR compares records read back with those written: times compare
// as instants (the store keeps milliseconds, in the local zone).
func sameCDR(got, want CDR) bool {
	if !got.Start.Equal(want.Start) || !got.Answer.Equal(want.Answer) || !got.End.Equal(want.End) {
		return false
	}
	got.Start, got.Answer, got.End = want.Start, want.Answer, want.End
	return got == want
}

func testCDRMediaRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	relayed := relayedCDR("m1", t0)
	// A relayed call that failed before any media: relayed, nothing
	// counted. It must read back as relayed, unlike a call not relayed.
	empty := CDR{ID: "m2", Kind: "call", Status: "failed", CallID: "media-m2", Start: t0.Add(time.Minute),
		End: t0.Add(time.Minute + time.Second), Code: 486, EndedBy: "callee", EndReason: "rejected", MediaRelayed: true}
	direct := CDR{ID: "m3", Kind: "call", Status: "answered", CallID: "media-m3", Start: t0.Add(2 * time.Minute),
		Answer: t0.Add(2 * time.Minute), End: t0.Add(3 * time.Minute), Duration: time.Minute, Code: 200}
	// A count a BIGINT cannot hold is kept at its largest, not refused
	// with the rest of its batch.
	huge := relayedCDR("m4", t0.Add(3*time.Minute))
	huge.CallerBytes = math.MaxUint64
	if err := s.WriteCDRs(ctx, []CDR{relayed, empty, direct, huge}); err != nil {
		t.Fatal(err)
	}
	got, err := s.CDRs(ctx, CDRFilter{})
	if err != nil {
		t.Fatal(err)
	}
	huge.CallerBytes = math.MaxInt64
	want := []CDR{relayed, empty, direct, huge}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameCDR(got[i], want[i]) {
			t.Errorf("round trip of %s\n got %+v\nwant %+v", want[i].ID, got[i], want[i])
		}
	}
}

// oldCDRTable is hlas_cdrs as releases before the media relay made it.
const oldCDRTable = `CREATE TABLE hlas_cdrs (
		id          TEXT NOT NULL PRIMARY KEY,
		kind        TEXT NOT NULL,
		status      TEXT NOT NULL,
		call_id     TEXT NOT NULL,
		from_uri    TEXT NOT NULL,
		from_tag    TEXT NOT NULL,
		to_uri      TEXT NOT NULL,
		to_tag      TEXT NOT NULL,
		request_uri TEXT NOT NULL,
		caller      TEXT NOT NULL,
		callee      TEXT NOT NULL,
		auth_user   TEXT NOT NULL,
		source      TEXT NOT NULL,
		user_agent  TEXT NOT NULL,
		start_ms    BIGINT NOT NULL,
		answer_ms   BIGINT NOT NULL,
		end_ms      BIGINT NOT NULL,
		duration_ms BIGINT NOT NULL,
		code        INTEGER NOT NULL,
		reason      TEXT NOT NULL,
		q850        INTEGER NOT NULL,
		q850_text   TEXT NOT NULL,
		ended_by    TEXT NOT NULL,
		end_reason  TEXT NOT NULL,
		branch      TEXT NOT NULL,
		branch_addr TEXT NOT NULL
	)`

// oldCDRRow is a record as an old release wrote it.
const oldCDRRow = `INSERT INTO hlas_cdrs VALUES ('old1', 'call', 'answered', 'c-old', 'sip:alice@example.test', 'a1',
	'sip:bob@example.test', 'b1', 'sip:bob@example.test', 'alice@example.test', 'bob@example.test', '', 'udp:192.0.2.1:5060',
	'phone', 1740830400000, 1740830401000, 1740830461000, 60000, 200, 'OK', 16, 'Normal', 'caller', 'bye',
	'sip:bob@192.0.2.2', 'udp:192.0.2.2:5060')`

// testCDRMediaMigration: a hlas_cdrs table made before the media columns
// existed gets them when the store is opened (the schema code Open runs
// on the same database), its old rows read with zero media fields, and
// opening again is no error.
func testCDRMediaMigration(t *testing.T, s Store) {
	ctx := context.Background()
	st := sqlOf(s)
	for _, q := range []string{`DROP TABLE hlas_cdrs`, oldCDRTable, oldCDRRow} {
		if _, err := st.db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if st.hasColumn(ctx, "hlas_cdrs", "media_relayed") {
		t.Fatal("the old table has the media columns")
	}
	for range 2 {
		reopened, err := newSQLStore(ctx, st.db, st.name, st.rebind)
		if err != nil {
			t.Fatal(err)
		}
		reopened.user.Close()
		reopened.usersVersion.Close()
	}
	for _, c := range cdrAddedColumns {
		if !st.hasColumn(ctx, c.table, c.column) {
			t.Errorf("no column %s.%s after opening", c.table, c.column)
		}
	}
	t0 := time.UnixMilli(1740830400000)
	oldRec := CDR{ID: "old1", Kind: "call", Status: "answered", CallID: "c-old", FromURI: "sip:alice@example.test",
		FromTag: "a1", ToURI: "sip:bob@example.test", ToTag: "b1", RequestURI: "sip:bob@example.test",
		Caller: "alice@example.test", Callee: "bob@example.test", Source: "udp:192.0.2.1:5060", UserAgent: "phone",
		Start: t0, Answer: t0.Add(time.Second), End: t0.Add(61 * time.Second), Duration: time.Minute, Code: 200,
		Reason: "OK", Q850: 16, Q850Text: "Normal", EndedBy: "caller", EndReason: "bye", Branch: "sip:bob@192.0.2.2",
		BranchAddr: "udp:192.0.2.2:5060"}
	relayed := relayedCDR("new1", t0.Add(time.Hour))
	if err := s.WriteCDRs(ctx, []CDR{relayed}); err != nil {
		t.Fatalf("writing to the migrated table: %v", err)
	}
	got, err := s.CDRs(ctx, CDRFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !sameCDR(got[0], oldRec) || !sameCDR(got[1], relayed) {
		t.Fatalf("after the migration:\n got %+v\nwant %+v\n     %+v", got, oldRec, relayed)
	}
}

// TestCDRMediaColumnsAddedOnOpen: an embedded database whose hlas_cdrs
// an old release made, rows and all, opens through Open and reads.
func TestCDRMediaColumnsAddedOnOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	db := sqlOf(s).db
	for _, q := range []string{`DROP TABLE hlas_cdrs`, oldCDRTable, oldCDRRow} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()
	if s, err = Open(ctx, Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.CDRs(ctx, CDRFilter{})
	if err != nil || len(got) != 1 {
		t.Fatalf("CDRs after reopening: %+v, %v", got, err)
	}
	if r := got[0]; r.ID != "old1" || r.Code != 200 || r.Duration != time.Minute || r.MediaRelayed || r.MediaStreams != 0 ||
		r.CallerPackets != 0 || r.CalleeBytes != 0 || r.CallerJitterMS != 0 {
		t.Fatalf("the old record: %+v", r)
	}
	if err := s.WriteCDRs(ctx, []CDR{relayedCDR("new1", time.Now())}); err != nil {
		t.Fatalf("writing to the migrated table: %v", err)
	}
}

// FuzzCDRMediaRoundTrip writes records with any media counters in one
// batch with an ordinary record: the batch commits whatever the values
// (a count beyond a BIGINT, a NaN jitter, which SQLite would turn into
// NULL), and each reads back as written or as the store's documented
// stand-in (the largest BIGINT, a jitter of 0). It runs on SQLite, and
// on PostgreSQL too when HLAS_TEST_POSTGRES is set.
func FuzzCDRMediaRoundTrip(f *testing.F) {
	f.Add(true, 1, uint64(1500), uint64(240000), uint64(3), int64(2), 1.5, uint64(1498), uint64(239680), uint64(0), int64(0), 20.0)
	f.Add(false, 0, uint64(0), uint64(0), uint64(0), int64(0), 0.0, uint64(0), uint64(0), uint64(0), int64(0), 0.0)
	f.Add(true, -1, uint64(math.MaxUint64), uint64(1<<63), uint64(math.MaxInt64), int64(math.MinInt64), math.NaN(),
		uint64(1), uint64(2), uint64(3), int64(math.MaxInt64), math.Inf(1))
	f.Add(true, math.MaxInt32, uint64(7), uint64(8), uint64(9), int64(-8388608), -0.0, uint64(7), uint64(8), uint64(9),
		int64(8388607), 1e308)
	ctx := context.Background()
	stores := fuzzStores(f)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, relayed bool, streams int, cp, cb, cd uint64, cl int64, cj float64, ep, eb, ed uint64, el int64, ej float64) {
		// MediaStreams is an int from the relay, one per m-line: the
		// column is an INTEGER, 32 bits on PostgreSQL.
		streams = max(min(streams, math.MaxInt32), math.MinInt32)
		i := n.Add(1)
		start := t0.Add(time.Duration(i) * time.Second)
		id := fmt.Sprintf("fm%d", i)
		rec := CDR{ID: id, Kind: "call", Status: "answered", CallID: id, Start: start, Code: 200,
			MediaRelayed: relayed, MediaStreams: streams,
			CallerPackets: cp, CallerBytes: cb, CallerDropped: cd, CallerLost: cl, CallerJitterMS: cj,
			CalleePackets: ep, CalleeBytes: eb, CalleeDropped: ed, CalleeLost: el, CalleeJitterMS: ej}
		other := CDR{ID: id + "-other", Kind: "call", Status: "failed", CallID: "other", Start: start.Add(time.Millisecond), Code: 486}
		want := rec
		for _, p := range []*uint64{&want.CallerPackets, &want.CallerBytes, &want.CallerDropped,
			&want.CalleePackets, &want.CalleeBytes, &want.CalleeDropped} {
			*p = min(*p, math.MaxInt64)
		}
		for _, p := range []*float64{&want.CallerJitterMS, &want.CalleeJitterMS} {
			if math.IsNaN(*p) || math.IsInf(*p, 0) {
				*p = 0
			}
		}
		for _, b := range stores {
			if err := b.s.WriteCDRs(ctx, []CDR{rec, other}); err != nil {
				t.Fatalf("%s: write: %v", b.name, err)
			}
			rs, err := b.s.CDRs(ctx, CDRFilter{Since: start, Until: start.Add(time.Second)})
			if err != nil {
				t.Fatalf("%s: read: %v", b.name, err)
			}
			if len(rs) != 2 || rs[1].ID != other.ID || !sameCDR(rs[0], want) {
				t.Fatalf("%s: read back %+v\nwant %+v", b.name, rs, want)
			}
		}
	})
}
