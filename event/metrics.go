package event

import "github.com/prometheus/client_golang/prometheus"

// metrics are the notifier's Prometheus metrics: namespace hlas, subsystem
// event.
type metrics struct {
	subs      *prometheus.GaugeVec
	notifies  *prometheus.CounterVec
	failures  *prometheus.CounterVec
	coalesced *prometheus.CounterVec
	responses *prometheus.CounterVec
	inFlight  prometheus.GaugeFunc
	waiting   prometheus.GaugeFunc
}

func newMetrics(n *Notifier) *metrics {
	const ns, sub = "hlas", "event"
	return &metrics{
		subs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "subscriptions",
			Help: "Subscriptions held, by event package and state (pending, active)."}, []string{"package", "state"}),
		notifies: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "notifies_total",
			Help: "NOTIFYs sent, by event package."}, []string{"package"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "notify_failures_total",
			Help: "NOTIFYs that failed, by event package and reason (the status code, timeout, transport)."}, []string{"package", "reason"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "coalesced_total",
			Help: "State changes merged into a NOTIFY still to be sent (rate limit, NOTIFY in flight), by event package."}, []string{"package"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "subscribe_responses_total",
			Help: "Final responses to SUBSCRIBE, by status code."}, []string{"code"}),
		inFlight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "notifies_in_flight",
			Help: "NOTIFY transactions awaiting their outcome."}, func() float64 { return float64(n.InFlight()) }),
		waiting: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "notifies_waiting",
			Help: "Subscriptions with a NOTIFY due, waiting for a slot under max_pending."}, func() float64 { return float64(n.Waiting()) }),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.subs, m.notifies, m.failures, m.coalesced, m.responses, m.inFlight, m.waiting} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// pkgMetrics are one package's series, resolved once.
type pkgMetrics struct {
	pending, active prometheus.Gauge
	notifies        prometheus.Counter
	coalesced       prometheus.Counter
	failures        *prometheus.CounterVec
}

func (m *metrics) forPackage(name string) pkgMetrics {
	return pkgMetrics{
		pending:   m.subs.WithLabelValues(name, "pending"),
		active:    m.subs.WithLabelValues(name, "active"),
		notifies:  m.notifies.WithLabelValues(name),
		coalesced: m.coalesced.WithLabelValues(name),
		failures:  m.failures.MustCurryWith(prometheus.Labels{"package": name}),
	}
}

// gauge returns the gauge of state st.
func (p *pkgMetrics) gauge(st State) prometheus.Gauge {
	if st == StatePending {
		return p.pending
	}
	return p.active
}
