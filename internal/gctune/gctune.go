// Package gctune lets the garbage collector run less often while the live
// heap is small. A SIP server allocates per message at a high rate but
// keeps a modest live heap (transactions, bindings), so with Go's default
// GOGC=100 it collects many times a second and marking costs a fifth of
// its CPU. The collector's work per second falls in proportion to GOGC;
// the heap's peak grows with it. The Tuner sets GOGC so that the garbage
// allowed between collections stays near a fixed headroom: high GOGC for
// a small live heap, Go's default once the live heap is large (a million
// registrations), so the memory per binding does not double.
package gctune

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultHeadroom = 256 << 20
	DefaultMin      = 100
	DefaultMax      = 400
	DefaultInterval = time.Second
)

// Config bounds the tuner. Zero fields take the defaults.
type Config struct {
	// Headroom is the garbage, in bytes, allowed to build up above the
	// live heap before a collection. Default 256 MiB.
	Headroom uint64
	// Min and Max bound the GOGC chosen. Defaults 100 and 400.
	Min, Max int
	// Interval is how often the live heap is read. Default 1 s.
	Interval time.Duration
}

// Tuner adjusts GOGC until Stop.
type Tuner struct {
	cfg     Config
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	percent int
	before  int // GOGC when the tuner started, restored by Stop
	sample  []metrics.Sample
}

// Start begins tuning. Only one tuner should run in a process: GOGC is
// the process's.
func Start(cfg Config) *Tuner {
	if cfg.Headroom == 0 {
		cfg.Headroom = DefaultHeadroom
	}
	if cfg.Min <= 0 {
		cfg.Min = DefaultMin
	}
	if cfg.Max < cfg.Min {
		cfg.Max = max(DefaultMax, cfg.Min)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	t := &Tuner{cfg: cfg, stop: make(chan struct{}), sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.before = debug.SetGCPercent(cfg.Max)
	debug.SetGCPercent(t.before)
	t.adjust()
	t.wg.Add(1)
	go t.run()
	return t
}

func (t *Tuner) run() {
	defer t.wg.Done()
	tk := time.NewTicker(t.cfg.Interval)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
			t.adjust()
		}
	}
}

// Percent returns the GOGC the tuner set last.
func (t *Tuner) Percent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.percent
}

func (t *Tuner) adjust() {
	metrics.Read(t.sample)
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	p := Choose(live, t.cfg)
	t.mu.Lock()
	defer t.mu.Unlock()
	if p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
}

// Choose is the GOGC for a live heap of live bytes: the headroom as a
// percentage of the live heap, within [Min, Max].
func Choose(live uint64, cfg Config) int {
	if live == 0 {
		return cfg.Max
	}
	p := cfg.Headroom * 100 / live
	switch {
	case p >= uint64(cfg.Max):
		return cfg.Max
	case p <= uint64(cfg.Min):
		return cfg.Min
	}
	return int(p)
}

// Stop ends tuning and restores the GOGC found at Start.
func (t *Tuner) Stop() {
	close(t.stop)
	t.wg.Wait()
	debug.SetGCPercent(t.before)
}
