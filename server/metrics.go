package server

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// metrics are the server's own counters, namespace hlas, subsystem server.
//
// The series counted for every message are resolved once and kept
// (lazyCounter), so that counting a message is an atomic load and an add:
// no label hashing, no allocation. Names, labels and the series exposed
// are those of the CounterVecs, which the rest still counts through.
type metrics struct {
	received   *prometheus.CounterVec
	responses  *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	queueDelay prometheus.Histogram

	// requests[i] counts received requests of method sip.KnownMethods[i];
	// the last one those of any other method.
	requests     []lazyCounter
	responsesIn  lazyCounter
	codes        [600]lazyCounter // responses sent, by status code - 100
	overload     lazyCounter      // dropped{reason="overload"}
	queueDelayed lazyCounter      // dropped{reason="queue_delay"}
	sendError    lazyCounter      // dropped{reason="send_error"}
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
	m.requests = make([]lazyCounter, len(sip.KnownMethods)+1)
	for i, meth := range sip.KnownMethods {
		m.requests[i] = lazyCounter{vec: m.received, lvs: []string{"request", meth}}
	}
	m.requests[len(sip.KnownMethods)] = lazyCounter{vec: m.received, lvs: []string{"request", "other"}}
	m.responsesIn = lazyCounter{vec: m.received, lvs: []string{"response", ""}}
	for i := range m.codes {
		m.codes[i] = lazyCounter{vec: m.responses, lvs: []string{strconv.Itoa(100 + i)}}
	}
	m.overload = lazyCounter{vec: m.dropped, lvs: []string{"overload"}}
	m.queueDelayed = lazyCounter{vec: m.dropped, lvs: []string{"queue_delay"}}
	m.sendError = lazyCounter{vec: m.dropped, lvs: []string{"send_error"}}

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
		m.codes[int(c0)*100+int(c1)*10+int(c2)-100].Inc()
		return
	}
	m.responses.WithLabelValues(string(b[8:11])).Inc()
}

// lazyCounter is one series of a CounterVec, looked up by its label values
// on its first increment and kept: the series appears once first counted,
// as with WithLabelValues, and later increments neither hash nor allocate.
type lazyCounter struct {
	vec *prometheus.CounterVec
	lvs []string
	c   atomic.Pointer[prometheus.Counter]
}

// Inc adds one.
func (l *lazyCounter) Inc() {
	c := l.c.Load()
	if c == nil {
		// Racing first increments resolve the same child; either store wins.
		child := l.vec.WithLabelValues(l.lvs...)
		c = &child
		l.c.Store(c)
	}
	(*c).Inc()
}
