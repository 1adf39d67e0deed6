package publish

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestConcurrentUse: publishers on a few shared resources refresh, modify,
// remove and start anew while Sweep runs and the clock moves. Run with
// -race. Afterwards memory and store hold the same publications and the
// counts add up.
func TestConcurrentUse(t *testing.T) {
	c := newClock()
	st := newMemStore()
	s := newState(t, Config{MinExpires: time.Second, MaxPerResource: 4, MaxPublications: 40}, st, c)
	const workers, rounds = 8, 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var sweeper sync.WaitGroup
	sweeper.Add(1)
	go func() {
		defer sweeper.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.Advance(time.Second)
			s.Sweep(c.Now())
			_ = s.Current("presence", "r0@x")
			_, _ = s.NextExpiry()
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			ctx := context.Background()
			var etag string
			resource := fmt.Sprintf("r%d@x", w%3)
			for range rounds {
				var res Result
				switch op := rng.IntN(10); {
				case etag == "" || op == 0:
					res = s.Publish(ctx, initial(resource, fmt.Sprintf("<presence>%d</presence>", rng.IntN(3)), 2+rng.IntN(20)))
				case op < 5:
					res = s.Publish(ctx, refresh(resource, etag, 2+rng.IntN(20)))
				case op < 9:
					res = s.Publish(ctx, modify(resource, etag, fmt.Sprintf("<presence>%d</presence>", rng.IntN(3)), 2+rng.IntN(20)))
				default:
					res = s.Publish(ctx, refresh(resource, etag, 0))
					etag = ""
					continue
				}
				switch res.Code {
				case 200:
					etag = res.ETag
				case 412, 503:
					etag = ""
				default:
					t.Errorf("unexpected %+v", res)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sweeper.Wait()

	if got, want := memEtags(s), st.etags(); !slices.Equal(got, want) {
		t.Fatalf("memory holds %v, store %v", got, want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, bytes := 0, 0
	for k, r := range s.res {
		if len(r.pubs) == 0 || r.reserved != 0 || len(r.pubs) > 4 {
			t.Errorf("resource %v: %d publications, %d reserved", k, len(r.pubs), r.reserved)
		}
		for _, e := range r.pubs {
			n++
			bytes += len(e.p.Body)
			if e.busy || e.heapIdx < 0 || s.heap[e.heapIdx] != e {
				t.Errorf("entry %s: busy %v, heap index %d", e.p.ETag, e.busy, e.heapIdx)
			}
		}
	}
	if n != s.count || n != len(s.heap) || bytes != s.bytes || s.reserved != 0 {
		t.Fatalf("count %d, heap %d, bytes %d, reserved %d; entries %d with %d bytes",
			s.count, len(s.heap), s.bytes, s.reserved, n, bytes)
	}
}

// TestSweepDuringWrite: a publication that lapses while its refresh is
// being written is neither lost nor double-freed: Sweep leaves it to the
// refresh.
func TestSweepDuringWrite(t *testing.T) {
	c := newClock()
	st := newMemStore()
	var expired int
	s, err := New(Config{}, Env{Now: c.Now, Store: st, OnExpire: func(string, string) { expired++ }}, codecs())
	if err != nil {
		t.Fatal(err)
	}
	e := mustOK(t, s, initial(alice, "<presence/>", 60)).ETag
	c.Advance(59 * time.Second)
	st.onWrite = func() {
		// The write takes two seconds: the old expiry passes meanwhile.
		c.Advance(2 * time.Second)
		s.Sweep(c.Now())
	}
	r := mustOK(t, s, refresh(alice, e, 60))
	st.onWrite = nil
	if expired != 0 {
		t.Fatalf("OnExpire called %d times for a publication being refreshed", expired)
	}
	if got := etagsOf(s, alice); !slices.Equal(got, []string{r.ETag}) {
		t.Fatalf("Current = %v, want the refreshed publication", got)
	}
	if next, ok := s.NextExpiry(); !ok || next.Before(c.Now()) {
		t.Fatalf("NextExpiry = %v, %v: the refreshed entry is not back in the heap", next, ok)
	}

	// The same with a failing write: the lapsed entry is swept after.
	st.onWrite = func() { c.Advance(120 * time.Second); s.Sweep(c.Now()) }
	st.fail = fmt.Errorf("down")
	if res := s.Publish(context.Background(), refresh(alice, r.ETag, 60)); res.Code != 500 {
		t.Fatalf("refresh with a failing store = %+v", res)
	}
	st.onWrite, st.fail = nil, nil
	s.Sweep(c.Now())
	if expired != 1 || s.Count() != 0 {
		t.Fatalf("after the failed refresh: OnExpire %d, Count %d; want 1, 0", expired, s.Count())
	}
}
