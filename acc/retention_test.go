package acc

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/store"
)

// signalStore is a real store that reports the cutoff of every purge
// once the purge has returned.
type signalStore struct {
	store.Store
	purged chan time.Time
}

func (s signalStore) PurgeCDRs(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.Store.PurgeCDRs(ctx, before)
	s.purged <- before
	return n, err
}

// waitPurge returns the cutoff of the next purge; the deadline only keeps
// a broken purger from hanging the test.
func waitPurge(t *testing.T, ch chan time.Time) time.Time {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no purge")
		return time.Time{}
	}
}

func storedIDs(t *testing.T, st store.CDRs) []string {
	t.Helper()
	rs, err := st.CDRs(context.Background(), store.CDRFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestRetentionPurgesPeriodically: with a retention of a day, the records
// that ended more than a day ago go when accounting starts, and those
// that age past it go at the next purge, an hour later on the clock;
// younger ones stay. The store is SQLite, as in the server.
func TestRetentionPurgesPeriodically(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const day = 24 * time.Hour
	rec := func(id string, start, end time.Time) store.CDR {
		return store.CDR{ID: id, Kind: KindCall, Status: StatusFailed, CallID: id, Start: start, End: end}
	}
	if err := st.WriteCDRs(ctx, []store.CDR{
		rec("old", t0.Add(-day-2*time.Hour), t0.Add(-day-time.Hour)),
		rec("no-end-old", t0.Add(-day-time.Millisecond), time.Time{}), // completed at its start
		rec("at-cutoff", t0.Add(-day-time.Hour), t0.Add(-day)),        // not before the cutoff: kept, then purged
		rec("aging", t0.Add(-day), t0.Add(-day+30*time.Minute)),
		// Started before any cutoff, ended after: its end counts.
		rec("young", t0.Add(-2*day), t0.Add(-22*time.Hour)),
	}); err != nil {
		t.Fatal(err)
	}
	clock := transaction.NewFakeClock(t0)
	reg := prometheus.NewRegistry()
	sig := signalStore{Store: st, purged: make(chan time.Time, 4)}
	a, err := New(Config{Retention: day}, Env{Store: sig, Clock: clock, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	if b := waitPurge(t, sig.purged); !b.Equal(t0.Add(-day)) {
		t.Fatalf("first purge before %v, want %v", b, t0.Add(-day))
	}
	if got, want := storedIDs(t, st), []string{"aging", "at-cutoff", "young"}; !slices.Equal(got, want) {
		t.Fatalf("after the purge at start: %v, want %v", got, want)
	}
	select {
	case b := <-sig.purged:
		t.Fatalf("purged again (before %v) without the clock moving", b)
	default:
	}

	clock.Advance(DefaultPurgeInterval)
	if b := waitPurge(t, sig.purged); !b.Equal(t0.Add(DefaultPurgeInterval - day)) {
		t.Fatalf("second purge before %v, want %v", b, t0.Add(DefaultPurgeInterval-day))
	}
	if got, want := storedIDs(t, st), []string{"young"}; !slices.Equal(got, want) {
		t.Fatalf("after the hourly purge: %v, want %v", got, want)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := clock.Pending(); n != 0 {
		t.Fatalf("%d timers left after Close", n)
	}
	clock.Advance(10 * DefaultPurgeInterval)
	select {
	case b := <-sig.purged:
		t.Fatalf("purged (before %v) after Close", b)
	default:
	}
	if got := testutil.ToFloat64(a.met.purged); got != 4 {
		t.Fatalf("hlas_acc_purged_total = %v, want 4", got)
	}
	if n, err := testutil.GatherAndCount(reg, "hlas_acc_purged_total"); err != nil || n != 1 {
		t.Fatalf("hlas_acc_purged_total registered %d times, %v", n, err)
	}
}

// TestRetentionOffByDefault: without a retention nothing is ever purged.
func TestRetentionOffByDefault(t *testing.T) {
	f := newFixture(t, Config{})
	if f.a.purger != nil {
		t.Fatal("a purger runs without a retention")
	}
	f.clock.Advance(48 * time.Hour)
	f.a.Close()
	if f.st.purges != 0 {
		t.Fatalf("%d purges without a retention", f.st.purges)
	}
}

// blockingStore's purge deletes 3 records and then waits for its
// context, like a long purge of a large table.
type blockingStore struct {
	*memStore
	started chan struct{}
}

func (s blockingStore) PurgeCDRs(ctx context.Context, before time.Time) (int64, error) {
	close(s.started)
	<-ctx.Done()
	return 3, ctx.Err()
}

// TestRetentionCloseInterruptsPurge: Close does not wait for a long purge
// to finish; what it deleted is counted.
func TestRetentionCloseInterruptsPurge(t *testing.T) {
	st := blockingStore{memStore: &memStore{}, started: make(chan struct{})}
	a, err := New(Config{Retention: time.Hour}, Env{Store: st, Clock: transaction.NewFakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	<-st.started
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for the purge")
	}
	if got := testutil.ToFloat64(a.met.purged); got != 3 {
		t.Fatalf("hlas_acc_purged_total = %v, want 3", got)
	}
}

func TestRetentionConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string // substring; "" for valid
	}{
		{"off", Config{}, ""},
		{"minimum", Config{Retention: MinRetention}, ""},
		{"90 days", Config{Retention: 90 * 24 * time.Hour, PurgeInterval: 10 * time.Minute}, ""},
		{"negative", Config{Retention: -time.Hour}, "accounting retention"},
		{"under the minimum", Config{Retention: 30 * time.Minute}, "accounting retention"},
		{"negative interval", Config{Retention: time.Hour, PurgeInterval: -time.Minute}, "accounting purge_interval"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
	f := newFixture(t, Config{Retention: 48 * time.Hour})
	if got := f.a.Config().PurgeInterval; got != DefaultPurgeInterval {
		t.Errorf("default purge_interval %v, want %v", got, DefaultPurgeInterval)
	}
}
