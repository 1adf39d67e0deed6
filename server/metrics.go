package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/internal/metric"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// metrics are the server's own counters, namespace hlas, subsystem server.
//
// The series counted for every message are resolved once and kept
// (internal/metric), so that counting a message is an atomic load and an add:
// no label hashing, no allocation. Names, labels and the series exposed
// are those of the CounterVecs, which the rest still counts through.
type metrics struct {
	received   *prometheus.CounterVec
	responses  *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	queueDelay prometheus.Histogram

	// requests[i] counts received requests of method sip.KnownMethods[i];
	// the last one those of any other method.
	requests     []*metric.Lazy
	responsesIn  *metric.Lazy
	codes        *metric.ByCode // responses sent
	overload     *metric.Lazy   // dropped{reason="overload"}
	queueDelayed *metric.Lazy   // dropped{reason="queue_delay"}
	sendError    *metric.Lazy   // dropped{reason="send_error"}
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
			Help: "Messages dropped or refused without processing, by reason (unparsable, no_via, bad_response, stray_response, " +
				"overload: queue or transaction table full, queue_delay: waited longer than max_queue_delay, send_error, handler_panic).",
		}, []string{"reason"}),
		queueDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "hlas", Subsystem: "server", Name: "queue_delay_seconds",
			Help:    "Time messages waited between their arrival and a worker taking them.",
			Buckets: []float64{.0001, .0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 5},
		}),
	}
	m.requests = make([]*metric.Lazy, len(sip.KnownMethods)+1)
	for i, meth := range sip.KnownMethods {
		m.requests[i] = metric.NewLazy(m.received, "request", meth)
	}
	m.requests[len(sip.KnownMethods)] = metric.NewLazy(m.received, "request", "other")
	m.responsesIn = metric.NewLazy(m.received, "response", "")
	m.codes = metric.NewByCode(m.responses)
	m.overload = metric.NewLazy(m.dropped, "overload")
	m.queueDelayed = metric.NewLazy(m.dropped, "queue_delay")
	m.sendError = metric.NewLazy(m.dropped, "send_error")

	reg.MustRegister(m.received, m.responses, m.dropped, m.queueDelay,
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

// requestReceived counts a received request by method: unknown methods
// share the label "other", so the label stays bounded.
func (m *metrics) requestReceived(method string) {
	i := 0
	for i < len(sip.KnownMethods) && sip.KnownMethods[i] != method {
		i++
	}
	m.requests[i].Inc()
}

// responseSent counts a response by the status code in its encoded status
// line ("SIP/2.0 200 OK").
func (m *metrics) responseSent(b []byte) {
	if len(b) < 12 {
		return
	}
	c0, c1, c2 := b[8]-'0', b[9]-'0', b[10]-'0'
	if c0 >= 1 && c0 <= 6 && c1 <= 9 && c2 <= 9 {
		m.codes.Inc(int(c0)*100 + int(c1)*10 + int(c2))
		return
	}
	m.responses.WithLabelValues(string(b[8:11])).Inc()
}
