package rtpengine

import "github.com/prometheus/client_golang/prometheus"

// metrics are the client's Prometheus metrics: namespace hlas, subsystem
// rtpengine.
type metrics struct {
	requests        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	retransmissions *prometheus.CounterVec
	stray           prometheus.Counter
	readErrors      prometheus.Counter
	pending         prometheus.GaugeFunc
	calls           prometheus.GaugeFunc
	evicted         prometheus.CounterFunc
}

func newMetrics(c *Client) *metrics {
	const ns, sub = "hlas", "rtpengine"
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "NG requests by command and result: ok, error (rtpengine refused), load_limit, timeout (no reply " +
				"after all attempts), busy (max_pending reached), canceled, closed, bad_reply, invalid."},
			[]string{"command", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help:    "Time from sending an NG request to its reply, retransmissions included, by command.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14)}, []string{"command"}),
		retransmissions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "retransmissions_total",
			Help: "NG requests sent again (same cookie) after a timeout, by command."}, []string{"command"}),
		stray: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "stray_replies_total",
			Help: "Datagrams from rtpengine matching no waiting request: late or duplicate replies, garbage."}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "read_errors_total",
			Help: "Errors reading the control socket, mostly ICMP port unreachable: rtpengine is not running."}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "pending_requests",
			Help: "NG requests waiting for their reply."}, func() float64 { return float64(len(c.slots)) }),
		calls: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "calls",
			Help: "Calls whose caller tag the client remembers (offered, not yet deleted)."},
			func() float64 { n, _ := c.calls.stats(); return float64(n) }),
		evicted: prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "calls_forgotten_total",
			Help: "Calls forgotten because max_calls was reached; their delete reports no statistics."},
			func() float64 { _, e := c.calls.stats(); return float64(e) }),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.retransmissions, m.stray, m.readErrors,
		m.pending, m.calls, m.evicted} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
