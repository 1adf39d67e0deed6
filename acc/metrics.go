package acc

import "github.com/prometheus/client_golang/prometheus"

// metrics are the accounting's Prometheus metrics: namespace hlas,
// subsystem acc.
type metrics struct {
	records      *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	purged       prometheus.Counter
	writeSeconds prometheus.Histogram
	calls        prometheus.GaugeFunc
	queue        prometheus.GaugeFunc
}

func newMetrics(a *Accounting) *metrics {
	const ns, sub = "hlas", "acc"
	return &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "records_total",
			Help: "Call detail records committed, by kind (call, message, register) and status."}, []string{"kind", "status"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_total",
			Help: "Records not written, by reason: limit (too many calls tracked), queue_full, store_error, closed."}, []string{"reason"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "purged_total",
			Help: "Records deleted because they were older than accounting.retention."}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "store_write_seconds",
			Help: "Duration of one batch commit of records.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		calls: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "calls",
			Help: "Calls being tracked: ringing or answered, not yet ended."}, func() float64 { return float64(a.Calls()) }),
		queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queue_length",
			Help: "Records waiting for their commit."}, func() float64 { return float64(a.w.queued()) }),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.records, m.dropped, m.purged, m.writeSeconds, m.calls, m.queue} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
