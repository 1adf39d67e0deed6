package acc

import (
	"context"
	"time"
)

// purger deletes the records older than Config.Retention: once when
// accounting starts, then every Config.PurgeInterval on the Env's Clock
// (so tests drive it with a transaction.FakeClock). The store deletes in
// chunks, so the writer's commits get through during a long purge.
type purger struct {
	a      *Accounting
	cancel context.CancelFunc
	done   chan struct{}
}

func startPurger(a *Accounting) *purger {
	ctx, cancel := context.WithCancel(context.Background())
	p := &purger{a: a, cancel: cancel, done: make(chan struct{})}
	go p.run(ctx)
	return p
}

// run purges until stop. The next purge is scheduled before the current
// one runs: a purge slower than the interval is followed by the next at
// once rather than pushing the schedule back.
func (p *purger) run(ctx context.Context) {
	defer close(p.done)
	due := make(chan struct{}, 1)
	for ctx.Err() == nil {
		t := p.a.clock.AfterFunc(p.a.cfg.PurgeInterval, func() {
			select {
			case due <- struct{}{}:
			default:
			}
		})
		p.purge(ctx)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-due:
		}
	}
}

// purge deletes the records completed more than Retention ago.
func (p *purger) purge(ctx context.Context) {
	a := p.a
	before := a.clock.Now().Add(-a.cfg.Retention)
	start := time.Now()
	n, err := a.env.Store.PurgeCDRs(ctx, before)
	a.met.purged.Add(float64(n)) // what was deleted counts, error or not
	switch {
	case err != nil && ctx.Err() != nil:
		a.log.Info("call record purge interrupted by shutdown", "records", n)
	case err != nil:
		a.log.Error("purge call records", "records", n, "before", before, "err", err)
	case n > 0:
		a.log.Info("call records purged", "records", n, "before", before, "took", time.Since(start))
	}
}

// stop interrupts a purge under way (the chunks it deleted stay deleted)
// and waits for the goroutine to end.
func (p *purger) stop() {
	p.cancel()
	<-p.done
}
