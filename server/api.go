package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/netutil"

	"github.com/hlas-voip/hlas/api"
)

// DefaultAPIListen is where the REST API listens when it is turned on
// without an address: loopback only.
const DefaultAPIListen = "127.0.0.1:8088"

// APIConfig is the configuration of the REST API (docs/api.md).
//
//	api:
//	  listen: 127.0.0.1:8088
//	  tls: false
type APIConfig struct {
	// Enabled turns the API on at DefaultAPIListen when Listen is empty.
	Enabled bool `yaml:"enabled"`
	// Listen is the API's host:port; setting it turns the API on. Off by
	// default: the API manages subscribers and bans.
	Listen string `yaml:"listen"`
	// TLS serves HTTPS with the server's tls_cert and tls_key.
	TLS bool `yaml:"tls"`
	// EventsBuffer is how many events GET /api/v1/events keeps for
	// clients that resume. Default api.DefaultEventsBuffer.
	EventsBuffer int `yaml:"events_buffer"`
	// RingTimeout is how long each phone of a click-to-call (POST
	// /api/v1/calls) may ring. Default 30s.
	RingTimeout time.Duration `yaml:"ring_timeout"`
	// MaxOriginations bounds the click-to-calls in progress; more get
	// 503. Default 100.
	MaxOriginations int `yaml:"max_originations"`
	// Config bounds the API's work: max_body, max_in_flight, timeout.
	api.Config `yaml:",inline"`
}

// maxOriginations is MaxOriginations or its default.
func (c APIConfig) maxOriginations() int {
	if c.MaxOriginations <= 0 {
		return 100
	}
	return c.MaxOriginations
}

// On reports whether the API is turned on.
func (c APIConfig) On() bool { return c.Enabled || c.Listen != "" }

// Addr is the address the API listens on.
func (c APIConfig) Addr() string {
	if c.Listen == "" {
		return DefaultAPIListen
	}
	return c.Listen
}

func (c APIConfig) validate(cfg *Config) error {
	if !c.On() {
		return nil
	}
	if _, _, err := splitHostPort(c.Addr()); err != nil {
		return fmt.Errorf("config api.listen %q: %w", c.Listen, err)
	}
	if c.TLS && (cfg.TLSCert == "" || cfg.TLSKey == "") {
		return errors.New("config api.tls: needs tls_cert and tls_key")
	}
	if c.EventsBuffer < 0 {
		return errors.New("config api.events_buffer must not be negative")
	}
	if c.RingTimeout < 0 || c.MaxOriginations < 0 {
		return errors.New("config api.ring_timeout and api.max_originations must not be negative")
	}
	if err := c.Config.Validate(); err != nil {
		return fmt.Errorf("config %w", err)
	}
	return nil
}

// maxAPIConns bounds the API's open connections.
const maxAPIConns = 256

// apiServer is the REST API's listener.
type apiServer struct {
	ln      net.Listener
	http    *http.Server
	started time.Time
	ready   atomic.Bool
}

// startAPI binds the API's listener when it is on. Its requests run on
// the HTTP server's goroutines, bounded by max_in_flight, and touch the
// SIP side only through the store and the registrar's short locks.
func (s *Server) startAPI() error {
	c := s.cfg.API
	if !c.On() {
		return nil
	}
	as := &apiServer{started: time.Now()}
	env := api.Env{
		Store:     s.store,
		Registrar: s.registrar,
		Stats:     func() any { return s.apiStats(as.started) },
		Reload: func() (any, error) {
			rep, err := s.ReloadFromSource()
			if errors.Is(err, ErrNoConfigSource) {
				return nil, api.ErrNoReload
			}
			if err != nil {
				return nil, err
			}
			return rep, nil
		},
		Calls:      callControl{s},
		Ready:      func() error { return as.readyErr() },
		Registerer: s.reg,
		Logger:     s.log,
	}
	if e := s.edge; e != nil {
		env.AuthFailed = func(src netip.Addr) { e.det.AuthFailed(src, "api:") }
		env.Banned = func(src netip.Addr) bool { return e.bans.Banned(src) && !e.trusted(src) }
	}
	if ev := s.events; ev != nil {
		env.Presence = ev.presentity
	}
	if ae := s.apiEvents; ae != nil {
		env.Events = ae.bus
	}
	h, err := api.New(c.Config, env)
	if err != nil {
		return err
	}
	if err := s.startOriginator(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr())
	if err != nil {
		return fmt.Errorf("api listen %s: %w", c.Addr(), err)
	}
	if c.TLS {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("api tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	// Connections are bounded too: each costs a goroutine, requests or
	// not. Over the bound, new ones wait in the kernel's backlog.
	ln = netutil.LimitListener(ln, maxAPIConns)
	as.ln = ln
	as.http = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	if ae := s.apiEvents; ae != nil {
		as.http.RegisterOnShutdown(func() { ae.bus.Drop("server stopping") })
	}
	s.api = as
	go func() { _ = as.http.Serve(ln) }()
	as.ready.Store(true)
	s.log.Info("api", "addr", ln.Addr().String(), "tls", c.TLS)
	return nil
}

func (as *apiServer) readyErr() error {
	if !as.ready.Load() {
		return errors.New("stopping")
	}
	return nil
}

// closeAPI stops the API first among the listeners, so that no request
// reaches a server half shut down.
func (s *Server) closeAPI() {
	as := s.api
	if as == nil {
		return
	}
	as.ready.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = as.http.Shutdown(ctx)
	cancel()
}

// APIAddr returns the bound API address, or "".
func (s *Server) APIAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.api == nil {
		return ""
	}
	return s.api.ln.Addr().String()
}

// presentity is the API's view of a presentity: the document watchers
// get and the publications composed into it.
func (ev *events) presentity(aor string) api.Presentity {
	p := api.Presentity{AOR: aor, Document: string(ev.presenceDoc(aor))}
	for _, pub := range ev.pub.Current("presence", aor) {
		p.Publications = append(p.Publications, api.Publication{ID: pub.ID, ETag: pub.ETag, ContentType: pub.ContentType,
			Body: string(pub.Body), Created: pub.Created.UTC(), Updated: pub.Updated.UTC(), Expires: pub.Expires.UTC()})
	}
	return p
}

// apiStats is /api/v1/stats: the version, the uptime, and the value of
// every hlas counter and gauge of the registry, one per series, named as
// Prometheus shows them (name{label="value"}); histograms and summaries
// as their _count and _sum.
func (s *Server) apiStats(started time.Time) any {
	out := map[string]float64{}
	mfs, err := s.reg.Gather()
	if err != nil {
		s.log.Warn("api stats: gather", "err", err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "hlas_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := name + labelText(m.GetLabel())
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[key] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[name+"_count"+labelText(m.GetLabel())] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labelText(m.GetLabel())] = m.GetHistogram().GetSampleSum()
			case m.Summary != nil:
				out[name+"_count"+labelText(m.GetLabel())] = float64(m.GetSummary().GetSampleCount())
				out[name+"_sum"+labelText(m.GetLabel())] = m.GetSummary().GetSampleSum()
			}
		}
	}
	return map[string]any{"version": Version, "uptime_seconds": time.Since(started).Seconds(), "metrics": out}
}

func labelText(ls []*dto.LabelPair) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}
