package publish

import (
	"context"
	"fmt"
	"slices"
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
