package proxy

import (
	"strconv"

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
	media     *prometheus.CounterVec
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
		media: prometheus.NewCounterVec(opts("media_total",
			"Media engine operations on relayed calls, by op: offer, answer, delete, timeout (a call ended for want of media), error."), []string{"op"}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "hlas", Subsystem: "proxy", Name: "contexts",
			Help: "Response contexts alive: requests being proxied statefully."}, func() float64 { return float64(p.Pending()) }),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.replies, m.responses, m.stateless, m.branches,
		m.cancels, m.timerC, m.failovers, m.enum, m.media, m.pending} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// classLabel is the class label of a status code, "4xx": a constant, not
// a string built per response.
func classLabel(code int) string {
	switch code / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	case 6:
		return "6xx"
	}
	return strconv.Itoa(code/100) + "xx"
}

// codeLabel is the code label of a status code: a constant for the codes
// the proxy answers with itself (a refusal under a flood must not
// allocate for its metric), strconv otherwise.
func codeLabel(code int) string {
	switch code {
	case 300:
		return "300"
	case 302:
		return "302"
	case 403:
		return "403"
	case 404:
		return "404"
	case 408:
		return "408"
	case 480:
		return "480"
	case 482:
		return "482"
	case 483:
		return "483"
	case 487:
		return "487"
	case 500:
		return "500"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return strconv.Itoa(code)
}
