package transport

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

const numProtos = 5

// protoIndex maps UDP, TCP, TLS, WS, WSS to 0 to 4.
func protoIndex(proto string) int {
	switch proto {
	case TCP:
		return 1
	case TLS:
		return 2
	case WS:
		return 3
	case WSS:
		return 4
	}
	return 0
}

// protoCounters are the live counters of one protocol.
type protoCounters struct {
	packetsIn, bytesIn, packetsOut, bytesOut atomic.Uint64
	keepalives, oversize, badFraming         atomic.Uint64
	stunIn, stunOut                          atomic.Uint64
	writeErrors                              atomic.Uint64
	connsOpen                                atomic.Int64
	connsAccepted, connsDialed               atomic.Uint64
	connsRejected, connsIdleClosed           atomic.Uint64
	dialErrors, handshakeErrors              atomic.Uint64
	dropped, connsDropped                    atomic.Uint64
	reads                                    atomic.Uint64
}

func (c *protoCounters) snapshot() ProtoStats {
	return ProtoStats{
		PacketsIn:       c.packetsIn.Load(),
		BytesIn:         c.bytesIn.Load(),
		PacketsOut:      c.packetsOut.Load(),
		BytesOut:        c.bytesOut.Load(),
		Keepalives:      c.keepalives.Load(),
		STUNIn:          c.stunIn.Load(),
		STUNOut:         c.stunOut.Load(),
		Oversize:        c.oversize.Load(),
		BadFraming:      c.badFraming.Load(),
		WriteErrors:     c.writeErrors.Load(),
		ConnsOpen:       c.connsOpen.Load(),
		ConnsAccepted:   c.connsAccepted.Load(),
		ConnsDialed:     c.connsDialed.Load(),
		ConnsRejected:   c.connsRejected.Load(),
		ConnsIdleClosed: c.connsIdleClosed.Load(),
		DialErrors:      c.dialErrors.Load(),
		HandshakeErrors: c.handshakeErrors.Load(),
		Dropped:         c.dropped.Load(),
		ConnsDropped:    c.connsDropped.Load(),
		Reads:           c.reads.Load(),
	}
}

// ProtoStats counts the traffic of one protocol since New. Connection
// fields stay zero for UDP.
type ProtoStats struct {
	PacketsIn  uint64 // messages handed to the Handler, Oversize and BadFraming ones excluded
	BytesIn    uint64 // bytes received, keep-alives and partial messages included
	PacketsOut uint64 // messages sent
	BytesOut   uint64 // bytes sent, keep-alive replies included
	Keepalives uint64 // RFC 5626 keep-alives received: CRLFCRLF answered on streams, CR/LF-only datagrams ignored on UDP
	STUNIn     uint64 // STUN datagrams handed to Config.STUN (UDP only)
	STUNOut    uint64 // STUN answers sent (UDP only; their bytes count in BytesOut)
	Oversize   uint64 // stream messages over MaxMessageSize
	BadFraming uint64 // stream messages with an unusable Content-Length
	// WriteErrors counts failed sends; on streams each closed its connection.
	WriteErrors     uint64
	ConnsOpen       int64  // connections open now
	ConnsAccepted   uint64 // inbound connections admitted
	ConnsDialed     uint64 // outbound connections established
	ConnsRejected   uint64 // inbound connections closed at once by MaxConns or MaxConnsPerSource
	ConnsIdleClosed uint64 // connections closed by IdleTimeout
	DialErrors      uint64 // outbound dials (TLS handshake included) that failed
	HandshakeErrors uint64 // inbound TLS handshakes that failed
	// Dropped counts datagrams and stream frames Config.Admit refused:
	// read, counted in BytesIn, never handed on.
	Dropped uint64
	// ConnsDropped counts stream connections Config.Admit closed, when
	// accepted or on a refused frame.
	ConnsDropped uint64
	// Reads counts the reads that returned datagrams (UDP only): one
	// system call each, up to Config.ReadBatch datagrams in one. Datagrams
	// per read near ReadBatch mean the reader is falling behind.
	Reads uint64
}

// Stats is a snapshot of the Manager's counters.
type Stats struct {
	UDP, TCP, TLS, WS, WSS ProtoStats
}

// Stats returns a snapshot of the counters.
func (m *Manager) Stats() Stats {
	return Stats{
		UDP: m.stats[0].snapshot(),
		TCP: m.stats[1].snapshot(),
		TLS: m.stats[2].snapshot(),
		WS:  m.stats[3].snapshot(),
		WSS: m.stats[4].snapshot(),
	}
}

// metricDef is one exported metric, read from ProtoStats.
type metricDef struct {
	desc       *prometheus.Desc // proto is its one variable label
	kind       prometheus.ValueType
	streamOnly bool // TCP and TLS only
	udpOnly    bool
	value      func(ProtoStats) float64
}

func newMetricDefs() []metricDef {
	// labelled defines a metric with constant labels as well; a reason
	// label, fixed while there is one reason, leaves room for more.
	labelled := func(name string, labels prometheus.Labels, help string, kind prometheus.ValueType, streamOnly bool, value func(ProtoStats) float64) metricDef {
		return metricDef{
			desc:       prometheus.NewDesc(prometheus.BuildFQName("hlas", "transport", name), help, []string{"proto"}, labels),
			kind:       kind,
			streamOnly: streamOnly,
			value:      value,
		}
	}
	def := func(name, help string, kind prometheus.ValueType, streamOnly bool, value func(ProtoStats) float64) metricDef {
		return labelled(name, nil, help, kind, streamOnly, value)
	}
	admit := prometheus.Labels{"reason": "admit"}
	udp := func(d metricDef) metricDef { d.udpOnly = true; return d }
	c, g := prometheus.CounterValue, prometheus.GaugeValue
	return []metricDef{
		def("packets_received_total", "SIP messages received and handed on.", c, false, func(s ProtoStats) float64 { return float64(s.PacketsIn) }),
		def("bytes_received_total", "Bytes received.", c, false, func(s ProtoStats) float64 { return float64(s.BytesIn) }),
		def("packets_sent_total", "SIP messages sent.", c, false, func(s ProtoStats) float64 { return float64(s.PacketsOut) }),
		def("bytes_sent_total", "Bytes sent.", c, false, func(s ProtoStats) float64 { return float64(s.BytesOut) }),
		def("keepalives_total", "RFC 5626 CRLF keep-alives received.", c, false, func(s ProtoStats) float64 { return float64(s.Keepalives) }),
		def("write_errors_total", "Failed sends.", c, false, func(s ProtoStats) float64 { return float64(s.WriteErrors) }),
		def("oversize_total", "Stream messages larger than the size limit.", c, true, func(s ProtoStats) float64 { return float64(s.Oversize) }),
		def("bad_framing_total", "Stream messages with an unusable Content-Length.", c, true, func(s ProtoStats) float64 { return float64(s.BadFraming) }),
		def("connections_open", "Stream connections open.", g, true, func(s ProtoStats) float64 { return float64(s.ConnsOpen) }),
		def("connections_accepted_total", "Inbound stream connections admitted.", c, true, func(s ProtoStats) float64 { return float64(s.ConnsAccepted) }),
		def("connections_dialed_total", "Outbound stream connections established.", c, true, func(s ProtoStats) float64 { return float64(s.ConnsDialed) }),
		def("connections_rejected_total", "Inbound stream connections refused by a connection limit.", c, true, func(s ProtoStats) float64 { return float64(s.ConnsRejected) }),
		def("connections_idle_closed_total", "Stream connections closed by the idle timeout or the message timeout (a message that took too long to arrive).", c, true, func(s ProtoStats) float64 { return float64(s.ConnsIdleClosed) }),
		def("dial_errors_total", "Outbound stream connections that failed.", c, true, func(s ProtoStats) float64 { return float64(s.DialErrors) }),
		def("tls_handshake_errors_total", "Inbound TLS handshakes, and WebSocket handshakes (ws, wss), that failed or were refused.", c, true, func(s ProtoStats) float64 { return float64(s.HandshakeErrors) }),
		labelled("packets_dropped_total", admit, "Datagrams and stream frames dropped unread, by reason (admit: refused by the admission check, such as a flood guard's ban).", c, false, func(s ProtoStats) float64 { return float64(s.Dropped) }),
		labelled("connections_dropped_total", admit, "Stream connections closed, by reason (admit: refused by the admission check when accepted or on a frame).", c, true, func(s ProtoStats) float64 { return float64(s.ConnsDropped) }),
		udp(def("reads_total", "Reads of UDP sockets that returned datagrams, each one system call taking up to the read batch size.", c, false, func(s ProtoStats) float64 { return float64(s.Reads) })),
	}
}

// Describe implements prometheus.Collector.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.metrics {
		ch <- d.desc
	}
}

// Collect implements prometheus.Collector: every metric has a proto label;
// connection and framing metrics exist for the streams (TCP, TLS, WS,
// WSS) only, reads for UDP only.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	s := m.Stats()
	for _, d := range m.metrics {
		for _, ps := range []struct {
			proto string
			st    ProtoStats
		}{{UDP, s.UDP}, {TCP, s.TCP}, {TLS, s.TLS}, {WS, s.WS}, {WSS, s.WSS}} {
			if (d.streamOnly && ps.proto == UDP) || (d.udpOnly && ps.proto != UDP) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(d.desc, d.kind, d.value(ps.st), ps.proto)
		}
	}
}

var _ prometheus.Collector = (*Manager)(nil)
