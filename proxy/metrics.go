package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus metrics: namespace hlas, subsystem
// proxy.
type metrics struct {
	requests  *prometheus.CounterVec
	replies   *prometheus.CounterVec
	responses *prometheus.CounterVec
	stateless *prometheus.CounterVec
	branches  prometheus.Counter
	cancels   prometheus.Counter
	timerC    prometheus.Counter
	failovers prometheus.Counter
	enum      *prometheus.CounterVec
	pending   prometheus.GaugeFunc
}

func newMetrics(p *Proxy) *metrics {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "hlas", Subsystem: "proxy", Name: name, Help: help}
	}
	return &metrics{
		requests: prometheus.NewCounterVec(opts("requests_total",
			"Requests routed, by outcome: local, forward, resolve, in_dialog (forwarded), redirected, rejected, not_found, unavailable, loop, spoofed, overload."),
			[]string{"outcome"}),
		replies: prometheus.NewCounterVec(opts("replies_total",
			"Responses the proxy made itself (not forwarded), by status code."), []string{"code"}),
		responses: prometheus.NewCounterVec(opts("final_responses_total",
			"Final responses forwarded upstream by response contexts, by class (the first 2xx of each)."), []string{"class"}),
		stateless: prometheus.NewCounterVec(opts("stateless_forwarded_total",
			"Messages forwarded without transaction state (RFC 3261 §16.11), by kind: request, response."), []string{"kind"}),
		branches:  prometheus.NewCounter(opts("branches_total", "Client transactions started for branches, failover attempts included.")),
		cancels:   prometheus.NewCounter(opts("cancels_total", "CANCELs sent to branches.")),
		timerC:    prometheus.NewCounter(opts("timer_c_total", "Branches ended by Timer C (RFC 3261 §16.8).")),
		failovers: prometheus.NewCounter(opts("failovers_total", "Moves to the next hop, gateway or q-value group after a failure.")),
		enum: prometheus.NewCounterVec(opts("enum_lookups_total",
			"ENUM lookups of routing rules, by result: hit (the request went to the URIs found), miss (on to the next rule)."), []string{"result"}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "hlas", Subsystem: "proxy", Name: "contexts",
			Help: "Response contexts alive: requests being proxied statefully."}, func() float64 { return float64(p.Pending()) }),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.replies, m.responses, m.stateless, m.branches,
		m.cancels, m.timerC, m.failovers, m.enum, m.pending} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
