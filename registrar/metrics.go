package registrar

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/internal/metric"
)

// metrics are the registrar's, namespace hlas, subsystem registrar.
type metrics struct {
	registers   *prometheus.CounterVec
	expired     prometheus.Counter
	storeWrites prometheus.Histogram
	storeErrors prometheus.Counter

	// byCode counts registers by status code without a label look-up per
	// REGISTER.
	byCode *metric.ByCode
}

func newMetrics(reg prometheus.Registerer, r *Registrar) *metrics {
	m := &metrics{
		registers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "registrar", Name: "registers_total",
			Help: "REGISTER requests answered by the registrar, by status code.",
		}, []string{"code"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "registrar", Name: "bindings_expired_total",
			Help: "Bindings removed because they lapsed.",
		}),
		storeWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "hlas", Subsystem: "registrar", Name: "store_write_seconds",
			Help:    "Time to commit one batch of binding changes to the store.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "registrar", Name: "store_errors_total",
			Help: "Failed writes and purges of the binding store.",
		}),
	}
	m.byCode = metric.NewByCode(m.registers)
	if reg == nil {
		return m
	}
	reg.MustRegister(m.registers, m.expired, m.storeWrites, m.storeErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hlas", Subsystem: "registrar", Name: "bindings",
			Help: "Bindings in the location service.",
		}, func() float64 { _, n := r.loc.stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hlas", Subsystem: "registrar", Name: "aors",
			Help: "Addresses-of-record with at least one binding.",
		}, func() float64 { n, _ := r.loc.stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hlas", Subsystem: "registrar", Name: "store_queue_length",
			Help: "REGISTERs waiting for their store write.",
		}, func() float64 {
			if r.w == nil {
				return 0
			}
			return float64(r.w.queued())
		}))
	return m
}

// answered counts a REGISTER answered with code.
func (m *metrics) answered(code int) { m.byCode.Inc(code) }

func (m *metrics) observeWrite(n int, d time.Duration, err error) {
	m.storeWrites.Observe(d.Seconds())
	if err != nil {
		m.storeErrors.Inc()
	}
}
