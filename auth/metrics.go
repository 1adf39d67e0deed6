package auth

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Authenticator's, namespace hlas, subsystem auth.
type metrics struct {
	results    *prometheus.CounterVec
	challenges *prometheus.CounterVec
	cache      cacheMetrics
	// Responses a Guard held back (Env.Guard), and those dropped because
	// too many were held back already.
	delayed, delayDropped prometheus.Counter
}

var outcomeLabels = [...]string{Accepted: "accepted", Challenged: "challenged", Malformed: "malformed", Forbidden: "forbidden", Failed: "error"}

func newMetrics(reg prometheus.Registerer, nonces, cached func() int) *metrics {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hlas", Subsystem: "auth", Name: "user_cache_lookups_total",
		Help: "Subscriber lookups of the cache: hit (answered from memory, unknown names included), miss (read from the store).",
	}, []string{"result"})
	flushes := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "hlas", Subsystem: "auth", Name: "user_cache_flushes_total",
		Help: "Times the subscriber cache was emptied: the store's subscribers changed, or it could not be asked.",
	})
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "auth", Name: "results_total",
			Help: "Authentication verdicts: accepted (good credentials), open (domain without authentication), challenged (401/407), malformed (400), forbidden (403), error (500).",
		}, []string{"result"}),
		challenges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "auth", Name: "challenges_total",
			Help: "Challenges sent, by reason: no_credentials, unknown_user, wrong_password, unsupported_parameters, stale_nonce, replay.",
		}, []string{"reason"}),
		cache: cacheMetrics{hits: lookups.WithLabelValues("hit"), misses: lookups.WithLabelValues("miss"), flushes: flushes},
		delayed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "auth", Name: "delayed_total",
			Help: "Responses held back because their account is under a password-guessing attack.",
		}),
		delayDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "auth", Name: "delay_dropped_total",
			Help: "Responses not sent because too many were held back already (auth MaxDelayed).",
		}),
	}
	for _, r := range []string{reasonNoCredentials, reasonUnknownUser, reasonWrongPassword, reasonUnsupported, reasonStale, reasonReplay} {
		m.challenges.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.results, m.challenges, m.delayed, m.delayDropped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hlas", Subsystem: "auth", Name: "nonces_tracked",
			Help: "Nonces in the nonce-count replay table.",
		}, func() float64 { return float64(nonces()) }), lookups, flushes, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "hlas", Subsystem: "auth", Name: "user_cache_entries",
			Help: "Subscribers and unknown names in the subscriber cache.",
		}, func() float64 { return float64(cached()) }))
	}
	return m
}

func (m *metrics) observe(r Result) {
	label := outcomeLabels[r.Outcome]
	if r.Outcome == Accepted && !r.Identity.Authenticated {
		label = "open"
	}
	m.results.WithLabelValues(label).Inc()
	if r.Outcome == Challenged {
		m.challenges.WithLabelValues(r.Reason).Inc()
	}
}
