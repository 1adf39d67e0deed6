package server

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's own counters, namespace hlas, subsystem server.
type metrics struct {
	received  *prometheus.CounterVec
	responses *prometheus.CounterVec
	dropped   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, queueLen func() float64) *metrics {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "server", Name: "messages_received_total",
			Help: "Messages received, by kind (request, response) and method.",
		}, []string{"kind", "method"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "server", Name: "responses_sent_total",
			Help: "Responses sent by the server, by status code.",
		}, []string{"code"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "server", Name: "messages_dropped_total",
			Help: "Messages dropped without an answer, by reason (unparsable, no_via, bad_response, stray_response, overload, send_error).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.received, m.responses, m.dropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hlas", Subsystem: "server", Name: "queue_length",
			Help: "Messages waiting for a worker.",
		}, queueLen))
	return m
}
