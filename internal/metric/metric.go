// Package metric holds Prometheus series resolved once and kept, for the
// counters incremented per message: looking a series up by its label values
// hashes them (and formats a status code) on every increment.
package metric

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Lazy is one series of a CounterVec, looked up by its label values on its
// first increment and kept: the series appears once first counted, as with
// WithLabelValues, and later increments neither hash nor allocate.
type Lazy struct {
	vec *prometheus.CounterVec
	lvs []string
	c   atomic.Pointer[prometheus.Counter]
}

// NewLazy returns the series of vec with the label values lvs.
func NewLazy(vec *prometheus.CounterVec, lvs ...string) *Lazy {
	return &Lazy{vec: vec, lvs: lvs}
}

// Inc adds one.
func (l *Lazy) Inc() {
	c := l.c.Load()
	if c == nil {
		// Racing first increments resolve the same child; either store wins.
		child := l.vec.WithLabelValues(l.lvs...)
		c = &child
		l.c.Store(c)
	}
	(*c).Inc()
}

// ByCode is a CounterVec whose one label is a SIP status code, with the
// series of codes 100-699 resolved on first use and kept.
type ByCode struct {
	vec   *prometheus.CounterVec
	codes [600]atomic.Pointer[prometheus.Counter]
}

// NewByCode returns vec's series by status code; vec has one label.
func NewByCode(vec *prometheus.CounterVec) *ByCode { return &ByCode{vec: vec} }

// Inc counts one of code.
func (b *ByCode) Inc(code int) {
	if code < 100 || code > 699 {
		b.vec.WithLabelValues(strconv.Itoa(code)).Inc()
		return
	}
	slot := &b.codes[code-100]
	c := slot.Load()
	if c == nil {
		child := b.vec.WithLabelValues(strconv.Itoa(code))
		c = &child
		slot.Store(c)
	}
	(*c).Inc()
}
