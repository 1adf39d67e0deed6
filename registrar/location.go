package registrar

import (
	"cmp"
	"context"
	"math"
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
// and an expiry wheel — one-second slots holding the records whose
// earliest binding lapses in that second — turned by one ticker for all
// bindings. A record knows its place in its slot, so moving it is O(1)
// and a slot holds each record once.
type location struct {
	mu       sync.RWMutex
	records  map[string]*record
	wheel    [wheelSize][]*record
	lastTick int64 // the last second the wheel processed
	count    int   // bindings in all records
}

// record is one AOR's bindings: 112 bytes, the first binding inline
// since most AORs have one. Its key in location.records is the AOR in the
// first binding's data, so the AOR costs no allocation of its own. A
// record taken out of the map is never reused.
type record struct {
	due  uint32     // Unix second its earliest binding lapses; 0: not scheduled
	pos  uint32     // its index in wheel[due%wheelSize]
	more *[]binding // the bindings after one; nil when there are none
	one  binding    // the first binding; its data is "" when there is none
}

// len returns the number of bindings.
func (rec *record) len() int {
	switch {
	case rec.one.data == "":
		return 0
	case rec.more == nil:
		return 1
	}
	return 1 + len(*rec.more)
}

// at returns the i-th binding.
func (rec *record) at(i int) *binding {
	if i == 0 {
		return &rec.one
	}
	return &(*rec.more)[i-1]
}

// appendLive appends copies of the bindings that have not lapsed at now
// (Unix ns) to dst.
func (rec *record) appendLive(dst []binding, now int64) []binding {
	for i, n := 0, rec.len(); i < n; i++ {
		if b := rec.at(i); b.live(now) {
			dst = append(dst, *b)
		}
	}
	return dst
}

func newLocation(now time.Time) *location {
	return &location{records: make(map[string]*record), lastTick: now.Unix()}
}

// dueSecond is the first whole second at or after the Unix nanoseconds
// t, within the range of record.due.
func dueSecond(t int64) uint32 {
	s := t / 1e9
	if t%1e9 > 0 {
		s++
	}
	return uint32(min(max(s, 1), math.MaxUint32))
}

// setRecordLocked replaces rec's bindings with copies of bs, whose AOR
// must be rec's, and reschedules it. A new record (&record{}) goes into
// the map when bs has bindings; a record left without any leaves it.
func (l *location) setRecordLocked(rec *record, bs []binding) {
	l.count += len(bs) - rec.len()
	old := rec.one.data
	due := uint32(0)
	for i := range bs {
		bs[i].flags &^= flagFresh
		if d := dueSecond(bs[i].expires); due == 0 || d < due {
			due = d
		}
	}
	switch len(bs) {
	case 0:
		rec.one, rec.more = binding{}, nil
	case 1:
		rec.one, rec.more = bs[0], nil
	default:
		rec.one = bs[0]
		if rec.more != nil && cap(*rec.more) >= len(bs)-1 {
			*rec.more = append((*rec.more)[:0], bs[1:]...)
		} else {
			more := slices.Clone(bs[1:])
			rec.more = &more
		}
	}
	l.scheduleLocked(rec, due)
	switch {
	case len(bs) == 0:
		if old != "" {
			delete(l.records, fieldOf(old, fieldAOR))
		}
	case rec.one.data != old:
		// A new first binding's data: the key moves into them, so the
		// old data are not kept alive by it (an assignment replaces the
		// key of an existing entry).
		l.records[rec.one.field(fieldAOR)] = rec
	}
}

// scheduleLocked moves rec to the slot of due (0: out of the wheel).
func (l *location) scheduleLocked(rec *record, due uint32) {
	if due == rec.due {
		return
	}
	if rec.due != 0 && due != 0 && rec.due%wheelSize == due%wheelSize {
		rec.due = due // same slot, a different turn
		return
	}
	if rec.due != 0 {
		slot := &l.wheel[rec.due%wheelSize]
		last := len(*slot) - 1
		moved := (*slot)[last]
		(*slot)[rec.pos], moved.pos = moved, rec.pos
		(*slot)[last] = nil
		*slot = (*slot)[:last]
		if c := cap(*slot); c > 64 && len(*slot) < c/4 {
			// Give back what a burst took.
			*slot = append(make([]*record, 0, 2*len(*slot)), *slot...)
		}
	}
	if due != 0 {
		slot := &l.wheel[due%wheelSize]
		rec.pos = uint32(len(*slot))
		*slot = append(*slot, rec)
	}
	rec.due = due
}

// lookup returns copies of an AOR's current bindings, highest q first,
// then the most recently refreshed (RFC 3261 §16.6, the proxy's order).
// The lock is held only to copy the compact form out.
func (l *location) lookup(aor string, now time.Time) []Binding {
	var buf [4]binding
	l.mu.RLock()
	var bs []binding
	if rec := l.records[aor]; rec != nil {
		bs = rec.appendLive(buf[:0], now.UnixNano())
	}
	l.mu.RUnlock()
	if len(bs) == 0 {
		return nil
	}
	sortBindings(bs)
	out := make([]Binding, len(bs))
	for i := range bs {
		out[i] = bs[i].export()
	}
	return out
}

// sortBindings orders bindings by q-value, highest first, then the most
// recently refreshed first.
func sortBindings(bs []binding) {
	slices.SortStableFunc(bs, func(a, b binding) int {
		if a.q != b.q {
			return int(b.q) - int(a.q)
		}
		return cmp.Compare(b.updated, a.updated)
	})
}

// expire turns the wheel to now, dropping the bindings that lapsed. It
// returns how many, and appends the AORs that lost bindings to aors.
func (l *location) expire(now time.Time, aors *[]string) int {
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
	nowNs := now.UnixNano()
	expired := 0
	var keep []binding
	for sec := from; sec <= end; sec++ {
		slot := &l.wheel[sec%wheelSize]
		// Backwards: a record taken out of the slot is replaced by the
		// last one, already seen; one rescheduled into it goes last.
		for i := len(*slot) - 1; i >= 0; i-- {
			rec := (*slot)[i]
			if int64(rec.due) > end {
				continue // due in a later turn of the wheel
			}
			keep = rec.appendLive(keep[:0], nowNs)
			if n := rec.len() - len(keep); n > 0 {
				expired += n
				if aors != nil {
					*aors = append(*aors, rec.one.field(fieldAOR))
				}
			}
			l.setRecordLocked(rec, keep)
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
		for i, n := 0, rec.len(); i < n; i++ {
			out = append(out, rec.at(i).export())
		}
	}
	return out
}

// writeOp is one REGISTER's worth of changes to write through to the store;
// done, when set, is told once they are committed (or failed).
type writeOp struct {
	put  []store.Binding
	del  []store.BindingKey
	done committer
}

// committer is told the outcome of its writeOp. An interface rather than
// a func: a pointer to the REGISTER's pending state fits in it as is,
// where a closure would be one more allocation per REGISTER.
type committer interface {
	committed(err error)
}

// writer writes binding changes through to the store from one goroutine,
// in the order they were made, in batches: everything queued while the
// previous transaction committed goes into the next one (group commit), so
// the store's per-transaction cost is shared by many REGISTERs. The queue
// is bounded; a full queue refuses new changes (the registrar then answers
// 503) instead of growing.
//
// When the store's writes are quick local appends (store.QuickWriter: the
// embedded database's journal), the worker that queued a change writes
// the batch itself if no one else is writing: waking the writer goroutine
// would cost more than the write. The writer goroutine then takes over
// only what queued meanwhile. busy keeps the batches in queue order: a
// worker or the writer goroutine only tries it (TryLock) and leaves the
// queue to the holder, or to a waiting flushAll, when that fails; only
// flushAll, after the queue is closed, waits for it.
type writer struct {
	st    store.Bindings
	q     *batch.Queue[writeOp]
	quick bool
	busy  sync.Mutex // held while batches are written
	ops   []writeOp  // the array of the last batch, reused by the next; only with busy held
}

func newWriter(st store.Bindings, maxQueue int) *writer {
	w := &writer{st: st, q: batch.New[writeOp](maxQueue, 1024)}
	if qw, ok := st.(store.QuickWriter); ok {
		w.quick = qw.QuickWrites()
	}
	return w
}

// enqueue queues op; false when the queue is full or closed. With a
// quick store the caller then calls settle, outside its locks.
func (w *writer) enqueue(op writeOp) bool {
	if w.quick {
		return w.q.PushQuiet(op)
	}
	return w.q.Push(op)
}

// settleRounds bounds the batches one settle writes: a worker that keeps
// finding changes queued by others hands the rest to the writer goroutine
// rather than stall its own queue of messages for long.
const settleRounds = 8

// settle writes the queue on the caller's goroutine when the store is
// quick and no batch is being written, up to settleRounds batches; what is
// left then goes to the writer goroutine. A change queued while another
// goroutine writes is written by that goroutine: whoever lets go of busy
// looks at the queue again, and a change queued after that look finds busy
// free.
func (w *writer) settle(ctx context.Context, observe func(n int, d time.Duration, err error)) {
	if !w.quick {
		return
	}
	for range settleRounds {
		if !w.busy.TryLock() {
			return // the holder looks at the queue when it lets go
		}
		w.writeBatch(ctx, observe)
		w.busy.Unlock()
		if w.q.Len() == 0 {
			return
		}
	}
	w.q.Signal()
}

// drain is the writer goroutine's answer to a wake-up: everything queued,
// holding busy so that batches written by workers keep their order. When a
// worker holds busy it gives up instead of waiting: that worker looks at
// the queue again when it lets go.
func (w *writer) drain(ctx context.Context, observe func(n int, d time.Duration, err error)) {
	for w.busy.TryLock() {
		w.flush(ctx, observe)
		w.busy.Unlock()
		if w.q.Len() == 0 {
			return
		}
	}
}

// flushAll writes everything queued, waiting for a worker's batch in
// progress: for Close, which must leave nothing behind. The queue is
// closed by then, so one pass empties it for good.
func (w *writer) flushAll(ctx context.Context, observe func(n int, d time.Duration, err error)) {
	w.busy.Lock()
	defer w.busy.Unlock()
	w.flush(ctx, observe)
}

// full reports whether enqueue would fail now.
func (w *writer) full() bool { return w.q.Full() }

func (w *writer) queued() int { return w.q.Len() }

// flush writes everything queued, batch by batch; observe gets each
// batch's size, duration and error. The caller holds busy.
func (w *writer) flush(ctx context.Context, observe func(n int, d time.Duration, err error)) {
	for w.writeBatch(ctx, observe) {
	}
}

// writeBatch writes one batch; false when the queue was empty. The caller
// holds busy: the batches share one array.
func (w *writer) writeBatch(ctx context.Context, observe func(n int, d time.Duration, err error)) bool {
	ops := w.q.TakeInto(w.ops)
	w.ops = ops
	if len(ops) == 0 {
		return false
	}
	put, del := merge(ops)
	start := time.Now()
	err := w.st.WriteBindings(ctx, put, del)
	observe(len(ops), time.Since(start), err)
	for _, op := range ops {
		if op.done != nil {
			op.done.committed(err)
		}
	}
	// The REGISTERs are answered: let go of them now rather than at the
	// next batch, which may be long in coming.
	clear(ops)
	return true
}

// merge folds a batch of ops into one set of writes: the last change to a
// binding wins.
func merge(batch []writeOp) ([]store.Binding, []store.BindingKey) {
	if len(batch) == 1 {
		// One REGISTER's changes name each binding once.
		return batch[0].put, batch[0].del
	}
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
