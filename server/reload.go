package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Change is one configuration key whose value differs between the running
// configuration and the one offered to Reload.
type Change struct {
	// Key is the key as written in the YAML file, dotted for nested
	// sections: "routing.rules", "security.limits.calls_per_minute".
	Key string `json:"key"`
	// Old and New are the values on one line (YAML in flow style for
	// lists, maps and sections); passwords in URLs are masked.
	Old string `json:"old"`
	New string `json:"new"`
}

// ReloadReport says what a Reload did.
type ReloadReport struct {
	// Applied are the changes in force now, for new requests and calls.
	Applied []Change `json:"applied"`
	// NeedsRestart are the changes that cannot be made to a running
	// server (listeners, data directory, stores, ...): they were not
	// applied, and the server keeps running with the old values until it
	// is restarted.
	NeedsRestart []Change `json:"needs_restart"`
}

// reloadState is what Reload keeps between reloads.
type reloadState struct {
	mu sync.Mutex
	// running is the configuration in force: the one New got, with the
	// live keys of each reload since; nil until the first reload (it is
	// then Server.cfg).
	running *Config
	// level is the log level the server's logger obeys (SetLogLevelVar);
	// nil: a log_level change needs a restart.
	level *slog.LevelVar
	// load rebuilds the configuration as at start (SetConfigLoader).
	load func() (Config, error)
}

// liveKeys are the keys (and whole sections) Reload applies to a running
// server; every other change needs a restart.
var liveKeys = [...]string{
	"log_level",
	"routing.trusted", "routing.locations", "routing.routes", "routing.gateways", "routing.rules",
	"security.trusted", "security.limits",
}

// SetLogLevelVar gives the server the level of its logger, so that Reload
// can change log_level live. Without it a log_level change is reported as
// needing a restart.
func (s *Server) SetLogLevelVar(v *slog.LevelVar) {
	s.reload.mu.Lock()
	s.reload.level = v
	s.reload.mu.Unlock()
}

// SetConfigLoader tells the server how its configuration was built (for
// hlas serve: the --config file with the command-line flags over it), so
// that ReloadFromSource can build it again.
func (s *Server) SetConfigLoader(load func() (Config, error)) {
	s.reload.mu.Lock()
	s.reload.load = load
	s.reload.mu.Unlock()
}

// ErrNoConfigSource is ReloadFromSource's error when no loader was set
// (SetConfigLoader): a server built from a Config in code has no file to
// read again.
var ErrNoConfigSource = errors.New("server: no configuration source to reload from")

// ReloadFromSource builds the configuration again with the loader of
// SetConfigLoader and Reloads it: what SIGHUP and the reload API do. A
// configuration that does not load is logged and returned, and changes
// nothing.
func (s *Server) ReloadFromSource() (ReloadReport, error) {
	s.reload.mu.Lock()
	load := s.reload.load
	s.reload.mu.Unlock()
	if load == nil {
		return ReloadReport{}, ErrNoConfigSource
	}
	cfg, err := load()
	if err != nil {
		s.log.Error("config reload failed, the running configuration is kept", "err", err)
		return ReloadReport{}, err
	}
	return s.Reload(cfg)
}

// Reload applies a new configuration to the running server without
// dropping a transaction or a call (SIGHUP, the reload API): the routing
// (routing.trusted, locations, routes, gateways, rules), the trusted
// networks and call limits of the security section, and log_level. New
// requests see them; transactions under way and calls already set up
// keep what they started with (in-dialog requests follow their route
// sets, not the rules). Every other difference is reported in
// NeedsRestart and not applied.
//
// cfg is the whole configuration, as for New (the file with the
// command-line flags over it). An invalid cfg changes nothing and is the
// error. Reload logs what it did: one INFO line per applied key, one WARN
// line per key that needs a restart, an ERROR line when it fails.
func (s *Server) Reload(cfg Config) (ReloadReport, error) {
	rep, err := s.reloadConfig(cfg)
	if err != nil {
		s.log.Error("config reload failed, the running configuration is kept", "err", err)
		return ReloadReport{}, err
	}
	for _, c := range rep.Applied {
		s.log.Info("config reloaded", "key", c.Key, "old", c.Old, "new", c.New)
	}
	for _, c := range rep.NeedsRestart {
		s.log.Warn("config change needs a restart", "key", c.Key, "old", c.Old, "new", c.New)
	}
	s.log.Info("config reload done", "applied", len(rep.Applied), "needs_restart", len(rep.NeedsRestart))
	// The level last, so that the lines above obey the old one.
	s.reload.mu.Lock()
	if lv := s.reload.level; lv != nil && s.reload.running != nil {
		lv.Set(LogLevel(s.reload.running.LogLevel))
	}
	s.reload.mu.Unlock()
	return rep, nil
}

func (s *Server) reloadConfig(cfg Config) (ReloadReport, error) {
	if err := cfg.Validate(); err != nil {
		return ReloadReport{}, err
	}
	cfg = cfg.withDefaults()
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	old := s.cfg
	if s.reload.running != nil {
		old = *s.reload.running
	}
	var changes []Change
	diffValues("", reflect.ValueOf(old), reflect.ValueOf(cfg), &changes)

	rep := ReloadReport{Applied: []Change{}, NeedsRestart: []Change{}}
	next := old
	routing, limits, trusted := false, false, false
	for _, c := range changes {
		live := isLive(c.Key)
		if live && c.Key == "log_level" && s.reload.level == nil {
			live = false
		}
		if !live {
			rep.NeedsRestart = append(rep.NeedsRestart, c)
			continue
		}
		rep.Applied = append(rep.Applied, c)
		switch {
		case c.Key == "log_level":
			next.LogLevel = cfg.LogLevel
		case strings.HasPrefix(c.Key, "routing."):
			routing = true
		case strings.HasPrefix(c.Key, "security.limits"):
			limits = true
		case c.Key == "security.trusted":
			trusted = true
		}
	}
	if routing {
		r := &next.Routing
		r.Trusted, r.Locations, r.Routes, r.Gateways, r.Rules =
			cfg.Routing.Trusted, cfg.Routing.Locations, cfg.Routing.Routes, cfg.Routing.Gateways, cfg.Routing.Rules
	}
	if limits {
		next.Security.Limits = cfg.Security.Limits
	}
	if trusted {
		next.Security.Trusted = cfg.Security.Trusted
	}

	// Everything that can fail before anything changes.
	if limits {
		if next.Security.Limits.ConcurrentCalls > 0 && s.acc == nil {
			return ReloadReport{}, errors.New("config security.limits.concurrent_calls: needs accounting, which is off until a restart")
		}
	}
	prefixes, err := next.Security.WithDefaults().TrustedPrefixes()
	if err != nil {
		return ReloadReport{}, fmt.Errorf("config %w", err)
	}
	if routing {
		// The one step that can still fail (an enum rule without DNS),
		// and the first to change anything.
		if err := s.proxy.Reload(next.Routing); err != nil {
			return ReloadReport{}, fmt.Errorf("config %w", err)
		}
	}
	if limits {
		if err := s.edge.lim.SetConfig(next.Security.Limits); err != nil {
			return ReloadReport{}, fmt.Errorf("config %w", err) // Validate checked it: not reached
		}
	}
	if trusted {
		s.edge.own.Set(prefixes)
	}
	s.reload.running = &next
	return rep, nil
}

func isLive(key string) bool {
	for _, k := range liveKeys {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// LogLevel is the slog level of a log_level setting (debug, info, warn,
// error; anything else is info: Validate refuses it first).
func LogLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// diffValues appends the keys whose values differ between a and b, of the
// same type: sections (structs with yaml keys) key by key, anything else
// as a whole.
func diffValues(prefix string, a, b reflect.Value, out *[]Change) {
	if a.Kind() == reflect.Struct && isSection(a.Type()) {
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if prefix != "" {
				name = prefix + "." + name
			}
			diffValues(name, a.Field(i), b.Field(i), out)
		}
		return
	}
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return
	}
	*out = append(*out, Change{Key: prefix, Old: render(prefix, a), New: render(prefix, b)})
}

// isSection reports whether t is a section of the file: a struct with
// yaml keys.
func isSection(t reflect.Type) bool {
	for i := range t.NumField() {
		if _, ok := t.Field(i).Tag.Lookup("yaml"); ok {
			return true
		}
	}
	return false
}

// render writes a value for the report.
func render(key string, v reflect.Value) string {
	switch v.Kind() {
	case reflect.Slice, reflect.Map, reflect.Struct, reflect.Pointer:
		if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() != reflect.Struct {
			return fmt.Sprint(v.Elem().Interface())
		}
		// YAML in flow style: one line, with the file's keys.
		var n yaml.Node
		if err := n.Encode(v.Interface()); err != nil {
			return fmt.Sprint(v.Interface())
		}
		flow(&n)
		b, err := yaml.Marshal(&n)
		if err != nil {
			return fmt.Sprint(v.Interface())
		}
		return strings.TrimSpace(string(b))
	case reflect.String:
		s := v.String()
		if strings.Contains(s, "://") && (key == "store" || strings.HasSuffix(key, "url")) {
			if u, err := url.Parse(s); err == nil {
				return u.Redacted()
			}
		}
		return s
	}
	return fmt.Sprint(v.Interface())
}

func flow(n *yaml.Node) {
	n.Style |= yaml.FlowStyle
	for _, c := range n.Content {
		flow(c)
	}
}
