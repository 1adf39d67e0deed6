package plane

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Why a packet was not forwarded: the reason label of
// hlas_media_packets_dropped_total.
const (
	dropStranger  = iota // not from the leg's party (after latching)
	dropNoPartner        // the leg is not linked (or its partner closed)
	dropNoDest           // no usable address for the other party (hold, or a family its socket cannot reach)
	dropTooBig           // larger than the read buffer
	dropSendError        // the kernel refused to send it
	// Only on legs with a Secure (WebRTC):
	dropNotReady        // SRTP to or from a party whose DTLS handshake has not completed
	dropUnknown         // not STUN, DTLS or RTP by its first byte (RFC 7983), or on the RTCP port of a leg that muxes
	dropSTUNRefused     // a STUN message the Secure refused (bad credentials, malformed)
	dropSTUNRateLimited // STUN beyond the leg's budget
	dropSRTPFailed      // SRTP or SRTCP that failed authentication (or replayed), or RTP that could not be protected
	dropQueueFull       // a DTLS record the Secure had no room for
	numDrops
)

var dropReasons = [numDrops]string{"stranger", "no_partner", "no_destination", "too_big", "send_error",
	"not_ready", "unknown_protocol", "stun_refused", "stun_rate_limited", "srtp_failed", "queue_full"}

// counters are one reader's: only it writes them, so the packet path
// touches no shared cache line; the collector sums the readers'.
type counters struct {
	packets, bytes atomic.Uint64
	reads          atomic.Uint64 // recvmmsg calls that returned packets
	drops          [numDrops]atomic.Uint64
}

// collector exports the plane's metrics (namespace hlas, subsystem
// media) by reading its counters at scrape time.
type collector struct {
	counters func() []*counters
	inUse    func() int
	failed   func() uint64
	kernel   func() (packets, bytes uint64, flows int64, failures uint64, on bool)

	portsInUse, packets, bytes, reads, dropped, allocFailed *prometheus.Desc
	kernelPackets, kernelFlows, kernelFailures              *prometheus.Desc
}

func newCollector(counters func() []*counters, inUse func() int, failed func() uint64,
	kernel func() (packets, bytes uint64, flows int64, failures uint64, on bool)) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("hlas", "media", name), help, labels, nil)
	}
	return &collector{
		counters: counters, inUse: inUse, failed: failed, kernel: kernel,
		kernelPackets:  d("kernel_packets_forwarded_total", "Packets of packets_forwarded_total that the kernel path forwarded."),
		kernelFlows:    d("kernel_flows", "RTP flows the kernel path forwards now."),
		kernelFailures: d("kernel_failures_total", "Flows left to userspace because the kernel path could not take them (no route, a full table)."),
		portsInUse:     d("ports_in_use", "UDP ports held by relay legs (two per leg: RTP and RTCP)."),
		packets:        d("packets_forwarded_total", "RTP and RTCP packets forwarded by the relay."),
		bytes:          d("bytes_forwarded_total", "Bytes of UDP payload forwarded by the relay."),
		reads:          d("read_batches_total", "Batches of packets read from the relay's sockets (one recvmmsg each): packets received per batch show how loaded the readers are."),
		dropped:        d("packets_dropped_total", "Packets the relay received and did not forward, by reason.", "reason"),
		allocFailed:    d("port_allocation_failures_total", "Legs refused because the port range was exhausted."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.portsInUse, c.packets, c.bytes, c.reads, c.dropped, c.allocFailed,
		c.kernelPackets, c.kernelFlows, c.kernelFailures} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	var packets, bytes, reads uint64
	var drops [numDrops]uint64
	for _, k := range c.counters() {
		packets += k.packets.Load()
		bytes += k.bytes.Load()
		reads += k.reads.Load()
		for i := range drops {
			drops[i] += k.drops[i].Load()
		}
	}
	kp, kb, flows, failures, on := c.kernel()
	packets += kp
	bytes += kb
	if on {
		ch <- prometheus.MustNewConstMetric(c.kernelPackets, prometheus.CounterValue, float64(kp))
		ch <- prometheus.MustNewConstMetric(c.kernelFlows, prometheus.GaugeValue, float64(flows))
		ch <- prometheus.MustNewConstMetric(c.kernelFailures, prometheus.CounterValue, float64(failures))
	}
	ch <- prometheus.MustNewConstMetric(c.portsInUse, prometheus.GaugeValue, float64(c.inUse()))
	ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(packets))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(reads))
	for i, n := range drops {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(n), dropReasons[i])
	}
	ch <- prometheus.MustNewConstMetric(c.allocFailed, prometheus.CounterValue, float64(c.failed()))
}
