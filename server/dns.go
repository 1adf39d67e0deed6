package server

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/sip/resolve"
)

// newResolver builds the server's RFC 3263 and ENUM resolver from the dns
// section. Targets are restricted to the transports the server listens on
// unless the section lists its own: the server cannot send on the others.
func newResolver(c resolve.Config, ls []Listener, reg prometheus.Registerer) (*resolve.Resolver, error) {
	if len(c.Transports) == 0 {
		seen := map[string]bool{}
		for _, l := range ls {
			t := strings.ToUpper(l.Proto)
			if !seen[t] {
				seen[t] = true
				c.Transports = append(c.Transports, t)
			}
		}
	}
	r, err := resolve.New(c)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		reg.MustRegister(dnsCollector{r})
	}
	return r, nil
}

// dnsCollector exports the resolver's counters as hlas_dns_* metrics.
type dnsCollector struct{ r *resolve.Resolver }

var dnsDescs = struct {
	hits, misses, entries, queries, failures, tcp, targetFailures, blocked, dead *prometheus.Desc
}{
	hits:           prometheus.NewDesc("hlas_dns_cache_hits_total", "DNS lookups answered from the cache, negative answers included.", nil, nil),
	misses:         prometheus.NewDesc("hlas_dns_cache_misses_total", "DNS lookups that had to ask a server.", nil, nil),
	entries:        prometheus.NewDesc("hlas_dns_cache_entries", "Answers in the DNS cache.", nil, nil),
	queries:        prometheus.NewDesc("hlas_dns_queries_total", "DNS queries sent, retries included.", nil, nil),
	failures:       prometheus.NewDesc("hlas_dns_query_failures_total", "DNS queries without a usable answer (timeout, network error, SERVFAIL).", nil, nil),
	tcp:            prometheus.NewDesc("hlas_dns_tcp_fallbacks_total", "Truncated UDP answers asked again over TCP.", nil, nil),
	targetFailures: prometheus.NewDesc("hlas_dns_target_failures_total", "Targets reported failed (RFC 3263 §4.3): transport error, timeout, 503.", nil, nil),
	blocked:        prometheus.NewDesc("hlas_dns_blocked_targets", "Targets in the failover blocklist.", nil, nil),
	dead:           prometheus.NewDesc("hlas_dns_dead_servers", "DNS servers deemed dead and passed by (RFC 2308 §7.2).", nil, nil),
}

// Describe implements prometheus.Collector.
func (dnsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dnsDescs.hits, dnsDescs.misses, dnsDescs.entries, dnsDescs.queries,
		dnsDescs.failures, dnsDescs.tcp, dnsDescs.targetFailures, dnsDescs.blocked, dnsDescs.dead} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c dnsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(dnsDescs.hits, s.CacheHits)
	counter(dnsDescs.misses, s.CacheMisses)
	gauge(dnsDescs.entries, s.CacheEntries)
	counter(dnsDescs.queries, s.Queries)
	counter(dnsDescs.failures, s.Failures)
	counter(dnsDescs.tcp, s.TCPFallbacks)
	counter(dnsDescs.targetFailures, s.TargetFailures)
	gauge(dnsDescs.blocked, s.Blocked)
	gauge(dnsDescs.dead, s.DeadServers)
}
