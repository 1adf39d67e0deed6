package registrar

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/internal/batch"
	"github.com/hlas-voip/hlas/store"
)

// wheelSize is the number of one-second slots of the expiry wheel. A
// binding due further ahead waits in its slot for more turns.
const wheelSize = 4096

// location is the in-memory location service: the bindings of every AOR,
// and an expiry wheel — one-second slots holding the AORs whose earliest
// binding lapses in that second — turned by one ticker for all bindings.
type location struct {
	mu       sync.RWMutex
	records  map[string]*record
	wheel    [wheelSize]map[string]struct{}
	lastTick int64 // the last second the wheel processed
	count    int   // bindings in all records
}

// record is one AOR's bindings.
type record struct {
	bindings []*Binding
	due      int64 // Unix second its earliest binding lapses; 0: not scheduled
}

func newLocation(now time.Time) *location {
	return &location{records: make(map[string]*record), lastTick: now.Unix()}
}

// dueSecond is the first whole second at or after t.
func dueSecond(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// setLocked replaces an AOR's bindings and reschedules it; nil removes it.
func (l *location) setLocked(aor string, bs []*Binding) {
	rec := l.records[aor]
	if rec == nil {
		if len(bs) == 0 {
			return
		}
		rec = &record{}
		l.records[aor] = rec
	}
	l.count += len(bs) - len(rec.bindings)
	rec.bindings = bs
	due := int64(0)
	for _, b := range bs {
		if d := dueSecond(b.Expires); due == 0 || d < due {
			due = d
		}
	}
	if due != rec.due {
		if rec.due != 0 {
			delete(l.wheel[rec.due%wheelSize], aor)
		}
		if due != 0 {
			slot := &l.wheel[due%wheelSize]
			if *slot == nil {
				*slot = make(map[string]struct{})
			}
			(*slot)[aor] = struct{}{}
		}
		rec.due = due
	}
	if len(bs) == 0 {
		delete(l.records, aor)
	}
}

// currentLocked returns an AOR's bindings that have not lapsed at now.
func (l *location) currentLocked(aor string, now time.Time) []*Binding {
	rec := l.records[aor]
	if rec == nil {
		return nil
	}
	out := make([]*Binding, 0, len(rec.bindings))
	for _, b := range rec.bindings {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	return out
}

// lookup returns copies of an AOR's current bindings, highest q first,
// then the most recently refreshed (RFC 3261 §16.6, the proxy's order).
func (l *location) lookup(aor string, now time.Time) []Binding {
	l.mu.RLock()
	rec := l.records[aor]
	var out []Binding
	if rec != nil {
		out = make([]Binding, 0, len(rec.bindings))
		for _, b := range rec.bindings {
			if b.Expires.After(now) {
				out = append(out, *b)
			}
		}
	}
	l.mu.RUnlock()
	sortBindings(out)
	return out
}

func sortBindings(bs []Binding) {
	slices.SortStableFunc(bs, func(a, b Binding) int {
		if a.Q != b.Q {
			return b.Q - a.Q
		}
		return b.Updated.Compare(a.Updated)
	})
}

// expire turns the wheel to now, dropping the bindings that lapsed. It
// returns how many.
func (l *location) expire(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := now.Unix()
	if end <= l.lastTick {
		return 0
	}
	from := l.lastTick + 1
	if end-from >= wheelSize { // asleep for a whole turn: every slot is due
		from = end - wheelSize + 1
	}
	expired := 0
	for sec := from; sec <= end; sec++ {
		slot := l.wheel[sec%wheelSize]
		for aor := range slot {
			rec := l.records[aor]
			if rec == nil {
				delete(slot, aor)
				continue
			}
			if rec.due > end {
				continue // due in a later turn of the wheel
			}
			keep := make([]*Binding, 0, len(rec.bindings))
			for _, b := range rec.bindings {
				if b.Expires.After(now) {
					keep = append(keep, b)
				}
			}
			expired += len(rec.bindings) - len(keep)
			l.setLocked(aor, keep)
		}
	}
	l.lastTick = end
	return expired
}

// stats returns the number of AORs and bindings.
func (l *location) stats() (aors, bindings int) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.records), l.count
}

// all returns copies of every binding, for tests and listings.
func (l *location) all() []Binding {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []Binding
	for _, rec := range l.records {
		for _, b := range rec.bindings {
			out = append(out, *b)
		}
	}
	return out
}

// writeOp is one REGISTER's worth of changes to write through to the store;
// done, when set, runs once they are committed (or failed).
type writeOp struct {
	put  []store.Binding
	del  []store.BindingKey
	done func(error)
}

// writer writes binding changes through to the store from one goroutine,
// in the order they were made, in batches: everything queued while the
// previous transaction committed goes into the next one (group commit), so
// the store's per-transaction cost is shared by many REGISTERs. The queue
// is bounded; a full queue refuses new changes (the registrar then answers
// 503) instead of growing.
type writer struct {
	st store.Bindings
	q  *batch.Queue[writeOp]
}

func newWriter(st store.Bindings, maxQueue int) *writer {
	return &writer{st: st, q: batch.New[writeOp](maxQueue, 1024)}
}

// enqueue queues op; false when the queue is full or closed.
func (w *writer) enqueue(op writeOp) bool { return w.q.Push(op) }

// full reports whether enqueue would fail now.
func (w *writer) full() bool { return w.q.Full() }

func (w *writer) queued() int { return w.q.Len() }

// flush writes everything queued, batch by batch; observe gets each
// batch's size, duration and error.
func (w *writer) flush(ctx context.Context, observe func(n int, d time.Duration, err error)) {
	for {
		ops := w.q.Take()
		if ops == nil {
			return
		}
		put, del := merge(ops)
		start := time.Now()
		err := w.st.WriteBindings(ctx, put, del)
		observe(len(ops), time.Since(start), err)
		for _, op := range ops {
			if op.done != nil {
				op.done(err)
			}
		}
	}
}

// merge folds a batch of ops into one set of writes: the last change to a
// binding wins.
func merge(batch []writeOp) ([]store.Binding, []store.BindingKey) {
	type change struct {
		put *store.Binding
		seq int
	}
	last := make(map[store.BindingKey]change)
	seq := 0
	for i := range batch {
		for j := range batch[i].del {
			last[batch[i].del[j]] = change{nil, seq}
			seq++
		}
		for j := range batch[i].put {
			b := &batch[i].put[j]
			last[store.BindingKey{AOR: b.AOR, ID: b.ID}] = change{b, seq}
			seq++
		}
	}
	keys := make([]store.BindingKey, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	// Write in the order the changes were made (deterministic, and rows
	// locked in a stable order).
	slices.SortFunc(keys, func(a, b store.BindingKey) int { return last[a].seq - last[b].seq })
	var put []store.Binding
	var del []store.BindingKey
	for _, k := range keys {
		if c := last[k]; c.put != nil {
			put = append(put, *c.put)
		} else {
			del = append(del, k)
		}
	}
	return put, del
}

// close refuses further ops.
func (w *writer) close() { w.q.Close() }
