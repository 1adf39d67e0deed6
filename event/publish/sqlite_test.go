package publish

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// openSQLite opens the embedded database in dir as the publications store.
func openSQLite(t testing.TB, dir string) (store.Store, store.Publications) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := st.(store.Publications)
	if !ok {
		t.Fatalf("%T does not keep publications", st)
	}
	return st, p
}

// TestRestartSQLite: published state written to the embedded database is
// there after the server restarts, ETags included.
func TestRestartSQLite(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	db, st := openSQLite(t, dir)
	s := newState(t, Config{}, st, c)
	a := mustOK(t, s, initial(alice, "<presence>phone</presence>", 3600))
	c.Advance(time.Millisecond)
	b := mustOK(t, s, initial(alice, "<presence>desk</presence>", 3600))
	a = mustOK(t, s, modify(alice, a.ETag, "<presence>phone, busy</presence>", 1800))
	gone := mustOK(t, s, initial("bob@example.test", "<presence/>", 3600))
	mustOK(t, s, refresh("bob@example.test", gone.ETag, 0))
	before := s.Current("presence", alice)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, st = openSQLite(t, dir)
	defer db.Close()
	s2 := newState(t, Config{}, st, c)
	if got := s2.Current("presence", alice); !slices.EqualFunc(got, before, samePub) {
		t.Fatalf("after restart Current = %+v,\nwant %+v", got, before)
	}
	if s2.Count() != 2 || s2.Current("presence", "bob@example.test") != nil {
		t.Fatalf("after restart Count = %d, want alice's two", s2.Count())
	}
	mustOK(t, s2, refresh(alice, a.ETag, 3600))
	mustOK(t, s2, refresh(alice, b.ETag, 0))
	if res := s2.Publish(context.Background(), refresh(alice, b.ETag, 3600)); res.Code != 412 {
		t.Fatalf("removed ETag after restart = %d, want 412", res.Code)
	}
}

// BenchmarkPublishRefreshSQLite: the refresh path with its write to the
// embedded database (one UPDATE per PUBLISH).
func BenchmarkPublishRefreshSQLite(b *testing.B) {
	db, st := openSQLite(b, b.TempDir())
	defer db.Close()
	s := newState(b, Config{}, st, newClock())
	const n = 1000
	etags := make([]string, n)
	reqs := make([]Request, n)
	for i := range n {
		r := fmt.Sprintf("user%d@example.test", i)
		etags[i] = mustOK(b, s, initial(r, "<presence>open</presence>", 3600)).ETag
		reqs[i] = refresh(r, "", 3600)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i % n
		reqs[j].IfMatch = etags[j]
		res := s.Publish(ctx, reqs[j])
		if res.Code != 200 {
			b.Fatalf("refresh = %+v", res)
		}
		etags[j] = res.ETag
	}
}

// BenchmarkPublishConcurrentSQLite is the presence storm of BENCHMARKS.md
// (issue 14) without the SIP around it: 1 000 presentities, each
// modifying its publication (PIDF open and closed in turn) through eight
// concurrent publishers, as the server's eight workers would. "paced"
// offers 1 000 PUBLISH/s, as the load does (b.N/1000 seconds per run), so
// the commits overlap only as often as they do in the server, with
// Config.CommitWindow off and at some values; "flat" runs the eight
// publishers as fast as they go. "memory" is the same on a store in
// memory: the cost of the benchmark's own pacing and of the compositor.
// cpu-ns/op is the process's CPU time per PUBLISH (what the Kamailio
// comparison counts), publish-ns/op the mean time a Publish takes (what a
// PUBLISH's answer waits), writes/commit the mean batch.
func BenchmarkPublishConcurrentSQLite(b *testing.B) {
	for _, tc := range []struct {
		rate   int
		window time.Duration
		memory bool
	}{
		{1000, -1, false}, {1000, 2 * time.Millisecond, false}, {1000, 4 * time.Millisecond, false},
		{1000, 8 * time.Millisecond, false}, {1000, -1, true}, {1000, 4 * time.Millisecond, true},
		{0, -1, false}, {0, 4 * time.Millisecond, false}, {0, 4 * time.Millisecond, true},
	} {
		name := "flat"
		if tc.rate > 0 {
			name = fmt.Sprintf("paced=%d/s", tc.rate)
		}
		if tc.memory {
			name += "/memory"
		}
		switch {
		case tc.window < 0:
			name += "/window=off"
		case tc.window > 0:
			name += "/window=" + tc.window.String()
		}
		b.Run(name, func(b *testing.B) {
			var st store.Publications = newMemStore()
			if !tc.memory {
				db, sq := openSQLite(b, b.TempDir())
				defer db.Close()
				st = sq
			}
			benchConcurrent(b, tc.rate, Config{CommitWindow: tc.window}, st)
		})
	}
}

func benchConcurrent(b *testing.B, rate int, cfg Config, st store.Publications) {
	const resources, publishers = 1000, 8
	cs := &countingStore{st: st}
	s, err := New(cfg, Env{Now: newClock().Now, Store: cs, Callers: publishers, Logger: slog.New(slog.DiscardHandler)}, codecs())
	if err != nil {
		b.Fatal(err)
	}
	bodies := [2]string{
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:user@example.test"><tuple id="t1"><status><basic>open</basic></status><contact>sip:user@192.0.2.10:5060</contact></tuple></presence>`,
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:user@example.test"><tuple id="t1"><status><basic>closed</basic></status><contact>sip:user@192.0.2.10:5060</contact></tuple></presence>`,
	}
	etags := make([]string, resources)
	reqs := make([]Request, resources)
	for i := range resources {
		r := fmt.Sprintf("user%04d@example.test", i)
		etags[i] = mustOK(b, s, initial(r, bodies[0], 3600)).ETag
		reqs[i] = modify(r, "", bodies[1], 3600)
	}
	ctx := context.Background()
	b.ReportAllocs()
	var wg sync.WaitGroup
	var inside atomic.Int64
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	for g := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Publisher g owns the resources i with i%publishers == g.
			for i := g; i < b.N; i += publishers {
				if rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
				}
				j := i % resources
				reqs[j].IfMatch = etags[j]
				reqs[j].Body = []byte(bodies[(i/resources)%2])
				t0 := time.Now()
				res := s.Publish(ctx, reqs[j])
				inside.Add(int64(time.Since(t0)))
				if res.Code != 200 {
					b.Errorf("modify = %+v", res)
					return
				}
				etags[j] = res.ETag
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(inside.Load())/float64(b.N), "publish-ns/op")
	b.ReportMetric(float64(b.N)/float64(cs.batches.Load()-resources), "writes/commit")
}

// countingStore counts the transactions of WritePublications.
type countingStore struct {
	st      store.Publications
	batches atomic.Int64
}

func (c *countingStore) PutPublication(ctx context.Context, p store.Publication, replaces string) error {
	c.batches.Add(1)
	return c.st.PutPublication(ctx, p, replaces)
}

func (c *countingStore) DeletePublication(ctx context.Context, event, resource, etag string) error {
	c.batches.Add(1)
	return c.st.DeletePublication(ctx, event, resource, etag)
}

func (c *countingStore) Publications(ctx context.Context, now time.Time) ([]store.Publication, error) {
	return c.st.Publications(ctx, now)
}

func (c *countingStore) PurgePublications(ctx context.Context, now time.Time) (int64, error) {
	return c.st.PurgePublications(ctx, now)
}

func (c *countingStore) WritePublications(ctx context.Context, ws []store.PublicationWrite) error {
	c.batches.Add(1)
	return c.st.WritePublications(ctx, ws)
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
