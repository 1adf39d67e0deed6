package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/sip/transaction"
)

// metrics are the server's own counters, namespace hlas, subsystem server.
type metrics struct {
	received  *prometheus.CounterVec
	responses *prometheus.CounterVec
	dropped   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, queueLen func() float64, txl *transaction.Layer) *metrics {
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
		}, queueLen),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hlas", Subsystem: "transaction", Name: "server_active",
			Help: "Server transactions in the table.",
		}, func() float64 { return float64(txl.Stats().ServerActive) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hlas", Subsystem: "transaction", Name: "client_active",
			Help: "Client transactions in the table.",
		}, func() float64 { return float64(txl.Stats().ClientActive) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "transaction", Name: "retransmissions_total",
			Help: "Messages retransmitted or re-sent for retransmitted requests.",
		}, func() float64 { return float64(txl.Stats().Retransmissions) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "transaction", Name: "timeouts_total",
			Help: "Transactions ended by a timeout (Timer B, F or H).",
		}, func() float64 { return float64(txl.Stats().Timeouts) }))
	return m
}
