package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// hangAfter bounds a wait that only a bug makes long: the test fails
// rather than hangs.
const hangAfter = 30 * time.Second

func put(resource, etag string) store.PublicationWrite {
	return store.PublicationWrite{P: store.Publication{Event: "presence", Resource: resource, ETag: etag, ID: etag,
		ContentType: pidf, Body: []byte("<presence/>")}}
}

// writeAsync runs c.write on a goroutine of its own.
func writeAsync(c *committer, w store.PublicationWrite) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.write(context.Background(), w) }()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(hangAfter):
		t.Fatal("write did not return")
		return nil
	}
}

// queued waits until n writes are queued behind the one being written.
func queued(t *testing.T, c *committer, n int) {
	t.Helper()
	deadline := time.Now().Add(hangAfter)
	for {
		c.mu.Lock()
		k := len(c.pending)
		c.mu.Unlock()
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// batchSizes records the sizes of the batches a memStore is given.
func batchSizes(st *memStore) func() []int {
	var mu sync.Mutex
	var sizes []int
	prev := st.onBatch
	st.onBatch = func(n int) {
		if prev != nil {
			prev(n)
		}
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}
	return func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(sizes)
	}
}

// TestCommitterGathers: once writes overlap, the leader waits for others
// to join its batch, and stops waiting as soon as every caller is queued
// (here the window is an hour: only the ceiling can end the wait).
func TestCommitterGathers(t *testing.T) {
	st := newMemStore()
	sizes := batchSizes(st)
	release := make(chan struct{})
	var once sync.Once
	st.onWrite = func() { once.Do(func() { <-release }) }
	const callers = 4
	c := newCommitter(st, time.Hour, callers)

	// A's write is held in the store; B, C, D queue behind it, which
	// shows that writes overlap.
	a := writeAsync(c, put("a@x", "a1"))
	for !c.isLeading() {
		time.Sleep(time.Millisecond)
	}
	var rest []<-chan error
	for _, r := range []string{"b", "c", "d"} {
		rest = append(rest, writeAsync(c, put(r+"@x", r+"1")))
	}
	queued(t, c, 3)
	close(release)
	if err := wait(t, a); err != nil {
		t.Fatal(err)
	}
	// B now leads and waits; A's next write is the fourth caller's.
	a2 := writeAsync(c, put("a@x", "a2"))
	for _, d := range append(rest, a2) {
		if err := wait(t, d); err != nil {
			t.Fatal(err)
		}
	}
	if got := sizes(); !slices.Equal(got, []int{1, 4}) {
		t.Fatalf("batches %v, want [1 4]: A alone, then B, C, D and A's second together", got)
	}
	if got := st.etags(); !slices.Equal(got, []string{"a1", "a2", "b1", "c1", "d1"}) {
		t.Fatalf("store %v", got)
	}
}

// TestCommitterAloneNeverWaits: a single caller writing in a loop never
// overlaps with itself, so its writes never wait for company (with an
// hour's window a wait would hang the test).
func TestCommitterAloneNeverWaits(t *testing.T) {
	st := newMemStore()
	c := newCommitter(st, time.Hour, 0)
	done := make(chan error, 1)
	go func() {
		for i := range 50 {
			if err := c.write(context.Background(), put("a@x", fmt.Sprintf("e%d", i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if st.batches != 50 {
		t.Fatalf("%d batches, want 50", st.batches)
	}
}

// gatheringNow waits until c's leader is waiting for writes to join.
func gatheringNow(t *testing.T, c *committer) {
	t.Helper()
	deadline := time.Now().Add(hangAfter)
	for {
		c.mu.Lock()
		g := c.gathering
		c.mu.Unlock()
		if g {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the leader never waited")
		}
		time.Sleep(time.Millisecond)
	}
}

func (c *committer) state() (worth bool, vain, skip int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.worth, c.vain, c.skip
}

// TestCommitterWaitInVain: after a wait that no write joined the leader
// waits again only once writes overlap; from the second wait in vain in a
// row on, batches are let pass without waiting, more after each.
func TestCommitterWaitInVain(t *testing.T) {
	st := newMemStore()
	sizes := batchSizes(st)
	release := make(chan struct{})
	var once sync.Once
	st.onWrite = func() { once.Do(func() { <-release }) }
	c := newCommitter(st, 20*time.Millisecond, 0)
	a := writeAsync(c, put("a@x", "a1"))
	for !c.isLeading() {
		time.Sleep(time.Millisecond)
	}
	b := writeAsync(c, put("b@x", "b1"))
	queued(t, c, 1)
	d := writeAsync(c, put("d@x", "d1"))
	queued(t, c, 2)
	close(release) // B leads, waits with D, and nobody joins them
	for _, w := range []<-chan error{a, b, d} {
		if err := wait(t, w); err != nil {
			t.Fatal(err)
		}
	}
	if got := sizes(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("batches %v, want [1 2]", got)
	}
	if worth, vain, skip := c.state(); worth || vain != 1 || skip != 0 {
		t.Fatalf("after a wait in vain: worth %v, vain %d, skip %d; want false, 1, 0", worth, vain, skip)
	}

	// A lone caller never waits now: with an hour's window a wait would
	// hang the test.
	c.window = time.Hour
	for i := range 5 {
		if err := c.write(context.Background(), put("e@x", fmt.Sprintf("e%d", i))); err != nil {
			t.Fatal(err)
		}
	}

	// Overlapping again, a second wait in vain: one batch is let pass.
	c.window = 20 * time.Millisecond
	c.worth = true
	if err := c.write(context.Background(), put("f@x", "f1")); err != nil {
		t.Fatal(err)
	}
	if worth, vain, skip := c.state(); worth || vain != 2 || skip != 1 {
		t.Fatalf("after two waits in vain: worth %v, vain %d, skip %d; want false, 2, 1", worth, vain, skip)
	}
	c.window = time.Hour
	c.worth = true
	if err := c.write(context.Background(), put("f@x", "f2")); err != nil { // let pass
		t.Fatal(err)
	}
	// The next waits, here until its ceiling of two ends it: not in vain.
	c.ceiling = 2
	g := writeAsync(c, put("g@x", "g1"))
	gatheringNow(t, c)
	if err := c.write(context.Background(), put("h@x", "h1")); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, g); err != nil {
		t.Fatal(err)
	}
	if worth, vain, skip := c.state(); !worth || vain != 0 || skip != 0 {
		t.Fatalf("after a wait the ceiling ended: worth %v, vain %d, skip %d; want true, 0, 0", worth, vain, skip)
	}
	if got := sizes(); got[len(got)-1] != 2 {
		t.Fatalf("batches %v, want the last of g and h together", got)
	}

	// A wait that a write joins at once and then nobody (the callers
	// that wait for their answers have all come) is in vain, but
	// overlapping writes still wait.
	c.ceiling = maxBatch
	c.window = time.Second
	k := writeAsync(c, put("k@x", "k1"))
	gatheringNow(t, c)
	if err := c.write(context.Background(), put("l@x", "l1")); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, k); err != nil {
		t.Fatal(err)
	}
	if worth, vain, skip := c.state(); !worth || vain != 1 || skip != 0 {
		t.Fatalf("after a wait gone still: worth %v, vain %d, skip %d; want true, 1, 0", worth, vain, skip)
	}

	// The window is off: nothing waits, whatever overlapped.
	off := newCommitter(st, -1, 0)
	off.worth = true
	if err := off.write(context.Background(), put("o@x", "o1")); err != nil {
		t.Fatal(err)
	}
}

// TestCommitterOutcomes: the writes of one batch each get their own
// precondition failure; a failure of the batch fails all of its writes
// and no other.
func TestCommitterOutcomes(t *testing.T) {
	st := newMemStore()
	if err := st.PutPublication(context.Background(), put("old@x", "o1").P, ""); err != nil {
		t.Fatal(err)
	}
	sizes := batchSizes(st)
	release := make(chan struct{})
	var once sync.Once
	st.onWrite = func() { once.Do(func() { <-release }) }
	c := newCommitter(st, -1, 0) // batches of what queued while another committed

	first := writeAsync(c, put("a@x", "a1"))
	for !c.isLeading() {
		time.Sleep(time.Millisecond)
	}
	stale := put("old@x", "o2")
	stale.Replaces = "gone"
	dup := put("old@x", "o1") // its ID is taken
	outcomes := []<-chan error{writeAsync(c, stale)}
	queued(t, c, 1)
	outcomes = append(outcomes, writeAsync(c, dup))
	queued(t, c, 2)
	outcomes = append(outcomes, writeAsync(c, put("b@x", "b1")))
	queued(t, c, 3)
	close(release)
	if err := wait(t, first); err != nil {
		t.Fatal(err)
	}
	want := []error{store.ErrNotFound, store.ErrExists, nil}
	for i, d := range outcomes {
		if err := wait(t, d); !errors.Is(err, want[i]) || (want[i] == nil) != (err == nil) {
			t.Errorf("write %d: %v, want %v", i, err, want[i])
		}
	}
	if got := sizes(); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("batches %v, want [1 3]", got)
	}

	// A failing batch: both of its writes fail, the next write succeeds.
	hold := make(chan struct{})
	var once2 sync.Once
	st.onWrite = func() { once2.Do(func() { <-hold }) }
	first = writeAsync(c, put("c@x", "c1"))
	for !c.isLeading() {
		time.Sleep(time.Millisecond)
	}
	x := writeAsync(c, put("x@x", "x1"))
	queued(t, c, 1)
	y := writeAsync(c, put("y@x", "y1"))
	queued(t, c, 2)
	st.mu.Lock()
	st.failOnce = errors.New("disk full") // for the batch after the held one
	st.mu.Unlock()
	close(hold)
	if err := wait(t, first); err != nil {
		t.Fatalf("the held write: %v", err)
	}
	for _, d := range []<-chan error{x, y} {
		if err := wait(t, d); err == nil || err.Error() != "disk full" {
			t.Errorf("write of the failed batch: %v, want disk full", err)
		}
	}
	if err := c.write(context.Background(), put("z@x", "z1")); err != nil {
		t.Fatal(err)
	}
	if got := st.etags(); !slices.Equal(got, []string{"a1", "b1", "c1", "o1", "z1"}) {
		t.Fatalf("store %v", got)
	}
}

func (c *committer) isLeading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}

// TestPublishDurableSQLite: every 200 leaves only once its change is
// committed: another handle on the database (a connection of its own,
// as another process would have) reads the new ETag as soon as Publish
// returns, while eight publishers share commits.
func TestPublishDurableSQLite(t *testing.T) {
	dir := t.TempDir()
	db, st := openSQLite(t, dir)
	defer db.Close()
	other, otherPubs := openSQLite(t, dir)
	defer other.Close()
	cs := &countingStore{st: st}
	const publishers, rounds = 8, 15
	s, err := New(Config{}, Env{Store: cs, Callers: publishers, Logger: slog.New(slog.DiscardHandler)}, codecs())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for g := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := fmt.Sprintf("p%d@example.test", g)
			etag := ""
			for i := range rounds {
				r := initial(res, fmt.Sprintf("<presence>%d</presence>", i), 3600)
				r.IfMatch = etag
				out := s.Publish(context.Background(), r)
				if out.Code != 200 {
					errs <- fmt.Errorf("%s round %d: %+v", res, i, out)
					return
				}
				etag = out.ETag
				pubs, err := otherPubs.Publications(context.Background(), time.Now())
				if err != nil {
					errs <- err
					return
				}
				seen := false
				for _, p := range pubs {
					seen = seen || p.Resource == res && p.ETag == etag && string(p.Body) == string(r.Body)
				}
				if !seen {
					errs <- fmt.Errorf("%s round %d: 200 with ETag %s before another connection could read it", res, i, etag)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d writes in %d transactions", publishers*rounds, cs.batches.Load())
}

// countParser is a Parser that counts its parses.
type countParser struct {
	pidfCodec
	mu sync.Mutex
	n  int
}

func (c *countParser) Parse(ct string, body []byte) (any, error) {
	if err := c.Validate(ct, body); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return "parsed " + string(body), nil
}

func (c *countParser) parses() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestDocuments: a published body is parsed once, when it is published,
// and Documents hands out that parse; a refresh keeps it, a modification
// replaces it; a publication loaded from the store is parsed on the first
// Documents only.
func TestDocuments(t *testing.T) {
	c := newClock()
	st := newMemStore()
	p := &countParser{}
	env := Env{Now: c.Now, Store: st, Logger: slog.New(slog.DiscardHandler)}
	s, err := New(Config{}, env, map[string]Codec{"presence": p})
	if err != nil {
		t.Fatal(err)
	}
	docs := func(s *State) []any {
		var out []any
		for _, d := range s.Documents("presence", alice) {
			out = append(out, d.Parsed)
		}
		return out
	}
	a := mustOK(t, s, initial(alice, "<presence>a</presence>", 3600))
	c.Advance(time.Millisecond)
	mustOK(t, s, initial(alice, "<presence>b</presence>", 3600))
	if got := docs(s); !slices.Equal(got, []any{"parsed <presence>a</presence>", "parsed <presence>b</presence>"}) || p.parses() != 2 {
		t.Fatalf("Documents = %v after %d parses, want both, parsed once each", got, p.parses())
	}
	a = mustOK(t, s, refresh(alice, a.ETag, 3600))
	docs(s)
	if p.parses() != 2 {
		t.Fatalf("%d parses after a refresh and two Documents, want 2", p.parses())
	}
	mustOK(t, s, modify(alice, a.ETag, "<presence>a2</presence>", 3600))
	if got := docs(s); got[0] != "parsed <presence>a2</presence>" || p.parses() != 3 {
		t.Fatalf("after a modification Documents = %v after %d parses", got, p.parses())
	}
	if res := s.Publish(context.Background(), initial(alice, "<bad/>", 3600)); res.Code != 400 || p.parses() != 3 {
		t.Fatalf("invalid body: %+v after %d parses", res, p.parses())
	}

	// A restart: the bodies come from the store, unparsed.
	p2 := &countParser{}
	s2, err := New(Config{}, env, map[string]Codec{"presence": p2})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"parsed <presence>a2</presence>", "parsed <presence>b</presence>"}
	for range 3 {
		if got := docs(s2); !slices.Equal(got, want) {
			t.Fatalf("after restart Documents = %v, want %v", got, want)
		}
	}
	if p2.parses() != 2 {
		t.Fatalf("%d parses after restart and three Documents, want 2", p2.parses())
	}

	// A codec without Parse: Documents has nothing parsed.
	s3, err := New(Config{}, env, codecs())
	if err != nil {
		t.Fatal(err)
	}
	if got := docs(s3); !slices.Equal(got, []any{nil, nil}) {
		t.Fatalf("without a Parser Documents = %v", got)
	}
}

// quickStore is a memStore whose writes are journal appends.
type quickStore struct{ *memStore }

func (quickStore) QuickWrites() bool { return true }

// TestCommitterQuickWriterNoWait: with a back end of quick writes the
// leader writes what is queued at once, without waiting an hour's window
// for the fourth caller; writes that queued behind one still share a
// batch.
func TestCommitterQuickWriterNoWait(t *testing.T) {
	st := newMemStore()
	sizes := batchSizes(st)
	release := make(chan struct{})
	var once sync.Once
	st.onWrite = func() { once.Do(func() { <-release }) }
	c := newCommitter(quickStore{st}, time.Hour, 4)
	a := writeAsync(c, put("a@x", "a1"))
	for !c.isLeading() {
		time.Sleep(time.Millisecond)
	}
	var rest []<-chan error
	for _, r := range []string{"b", "c", "d"} {
		rest = append(rest, writeAsync(c, put(r+"@x", r+"1")))
	}
	queued(t, c, 3)
	close(release)
	for _, d := range append(rest, a) {
		if err := wait(t, d); err != nil {
			t.Fatal(err)
		}
	}
	if got := sizes(); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("batches %v, want [1 3]: A alone, then B, C, D together without waiting", got)
	}
}
