package acc

import (
	"context"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/internal/batch"
	"github.com/hlas-voip/hlas/store"
)

// writeAttempts is how often a batch is tried before its records are
// given up (and their held responses released).
const writeAttempts = 3

// op is one record waiting for its commit; done runs after it.
type op struct {
	rec  store.CDR
	done func()
}

// writer commits records from one goroutine in batches: whatever queued
// while the previous transaction committed goes into the next one (group
// commit), so a busy server pays one fsync for many records. The queue is
// bounded; a full one drops the record (counted) rather than delaying the
// response held for it.
type writer struct {
	a    *Accounting
	q    *batch.Queue[op]
	stop chan struct{}
	wg   sync.WaitGroup
}

func newWriter(a *Accounting, maxQueue int) *writer {
	return &writer{a: a, q: batch.New[op](maxQueue, 1024), stop: make(chan struct{})}
}

func (w *writer) start() {
	w.wg.Add(1)
	go w.run()
}

// run commits batches until close, then what is left.
func (w *writer) run() {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			w.flush()
			return
		case <-w.q.Wake():
			w.flush()
		}
	}
}

// enqueue queues rec; done (maybe nil) runs once it is committed. When
// the queue is full or closed the record is dropped and done runs at
// once: the caller is not kept waiting for a record that will not come.
func (w *writer) enqueue(rec store.CDR, done func()) {
	if w.q.Push(op{rec, done}) {
		return
	}
	reason := "queue_full"
	if w.q.Closed() {
		reason = "closed"
	}
	w.a.met.dropped.WithLabelValues(reason).Inc()
	w.a.log.Warn("call record dropped", "call-id", rec.CallID, "why", reason)
	if done != nil {
		done()
	}
}

func (w *writer) queued() int { return w.q.Len() }

// flush commits everything queued, batch by batch, then releases each
// batch's held responses.
func (w *writer) flush() {
	ctx := context.Background()
	for {
		ops := w.q.Take()
		if ops == nil {
			return
		}
		recs := make([]store.CDR, len(ops))
		for i := range ops {
			recs[i] = ops[i].rec
		}
		var err error
		for attempt := 1; attempt <= writeAttempts; attempt++ {
			start := time.Now()
			err = w.a.env.Store.WriteCDRs(ctx, recs)
			w.a.met.writeSeconds.Observe(time.Since(start).Seconds())
			if err == nil {
				break
			}
			w.a.log.Error("write call records", "records", len(recs), "attempt", attempt, "err", err)
			if attempt < writeAttempts {
				time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
			}
		}
		for _, r := range recs {
			if err != nil {
				w.a.met.dropped.WithLabelValues("store_error").Inc()
			} else {
				w.a.met.records.WithLabelValues(r.Kind, r.Status).Inc()
			}
		}
		for _, o := range ops {
			if o.done != nil {
				o.done()
			}
		}
	}
}

// close refuses further records, commits the queued ones and waits.
func (w *writer) close() {
	if !w.q.Close() {
		return
	}
	close(w.stop)
	w.wg.Wait()
}
