package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/store"
)

// API is the REST API's http.Handler.
type API struct {
	cfg  Config
	env  Env
	log  *slog.Logger
	mux  *http.ServeMux
	slot chan struct{} // requests in flight

	requests     *prometheus.CounterVec
	authFailures prometheus.Counter
	busy         prometheus.Counter
}

// route is one endpoint: the table the mux is built from and the OpenAPI
// test walks.
type route struct {
	pattern string // "GET /api/v1/subscribers/{aor}"
	h       func(a *API, w http.ResponseWriter, r *http.Request) error
	open    bool // no token needed
}

var routes = []route{
	{"GET /healthz", (*API).healthz, true},
	{"GET /readyz", (*API).readyz, true},
	{"GET /api/v1/openapi.json", (*API).openapi, false},
	{"GET /api/v1/subscribers", (*API).listSubscribers, false},
	{"POST /api/v1/subscribers", (*API).createSubscriber, false},
	{"GET /api/v1/subscribers/{aor}", (*API).getSubscriber, false},
	{"PUT /api/v1/subscribers/{aor}/password", (*API).setPassword, false},
	{"DELETE /api/v1/subscribers/{aor}", (*API).deleteSubscriber, false},
	{"GET /api/v1/registrations", (*API).listRegistrations, false},
	{"DELETE /api/v1/registrations/{aor}", (*API).unregisterAOR, false},
	{"DELETE /api/v1/registrations/{aor}/{id}", (*API).unregisterBinding, false},
	{"GET /api/v1/calls", (*API).listCalls, false},
	{"POST /api/v1/calls", (*API).originate, false},
	{"GET /api/v1/calls/{call_id}", (*API).getCall, false},
	{"DELETE /api/v1/calls/{call_id}", (*API).hangupCall, false},
	{"GET /api/v1/cdrs", (*API).listCDRs, false},
	{"GET /api/v1/bans", (*API).listBans, false},
	{"POST /api/v1/bans", (*API).addBan, false},
	{"DELETE /api/v1/bans/{source...}", (*API).deleteBan, false},
	{"GET /api/v1/presence/{aor}", (*API).getPresence, false},
	{"GET /api/v1/presence/{aor}/mwi", (*API).getMWI, false},
	{"PUT /api/v1/presence/{aor}/mwi", (*API).setMWI, false},
	{"GET /api/v1/stats", (*API).stats, false},
	{"POST /api/v1/reload", (*API).reload, false},
	{eventsRoute, (*API).events, false},
}

// New builds the API over env.
func New(cfg Config, env Env) (*API, error) {
	if env.Store == nil || env.Registrar == nil {
		return nil, errors.New("api: Env.Store and Env.Registrar are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if env.Now == nil {
		env.Now = time.Now
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, env: env, log: log.With("feature", "api"), mux: http.NewServeMux(), slot: make(chan struct{}, cfg.MaxInFlight)}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hlas", Subsystem: "api", Name: "requests_total",
		Help: "API requests answered, by route pattern and status code.",
	}, []string{"route", "code"})
	a.authFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "hlas", Subsystem: "api", Name: "auth_failures_total",
		Help: "API requests with a missing or wrong bearer token (answered 401).",
	})
	a.busy = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "hlas", Subsystem: "api", Name: "busy_total",
		Help: "API requests refused with 503 because max_in_flight were running.",
	})
	if env.Registerer != nil {
		if err := registerAll(env.Registerer, a.requests, a.authFailures, a.busy); err != nil {
			return nil, err
		}
		if err := registerAll(env.Registerer, eventMetrics(env.Events)...); err != nil {
			return nil, err
		}
	}
	for _, rt := range routes {
		if rt.pattern == eventsRoute {
			a.mux.Handle(rt.pattern, a.wrapStream(rt))
			continue
		}
		a.mux.Handle(rt.pattern, a.wrap(rt))
	}
	a.mux.Handle(consoleRoute.pattern, a.wrap(consoleRoute))
	return a, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("api: metrics: %w", err)
		}
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// statusWriter remembers the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Error is an answer other than success: its status and a message that
// names the offending field when there is one.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Message }

func fail(status int, field, format string, args ...any) *Error {
	return &Error{Status: status, Field: field, Message: fmt.Sprintf(format, args...)}
}

// wrap is the middleware of every route: the bound on requests in
// flight, the token, the body size and time limits, the metrics, and
// the error answer.
func (a *API) wrap(rt route) http.Handler {
	method, _, _ := strings.Cut(rt.pattern, " ")
	write := method != http.MethodGet && method != http.MethodHead
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { a.requests.WithLabelValues(rt.pattern, strconv.Itoa(sw.code)).Inc() }()
		select {
		case a.slot <- struct{}{}:
			defer func() { <-a.slot }()
		default:
			a.busy.Inc()
			sw.Header().Set("Retry-After", "1")
			writeError(sw, fail(http.StatusServiceUnavailable, "", "busy: too many API requests at once"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.Timeout)
		defer cancel()
		r = r.WithContext(ctx)
		if !rt.open {
			if e := a.authorize(r, write); e != nil {
				if e.Status == http.StatusUnauthorized {
					sw.Header().Set("WWW-Authenticate", `Bearer realm="hlas"`)
				}
				writeError(sw, e)
				return
			}
		}
		r.Body = http.MaxBytesReader(sw, r.Body, a.cfg.MaxBody)
		if err := rt.h(a, sw, r); err != nil {
			if sw.code != 0 {
				// The answer had begun (a client gone mid-write): it
				// cannot become an error any more.
				a.log.Debug("answer cut short", "route", rt.pattern, "err", err)
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				e = a.internal(err)
			}
			writeError(sw, e)
		}
	})
}

func (a *API) internal(err error) *Error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fail(http.StatusNotFound, "", "not found")
	case errors.Is(err, store.ErrExists):
		return fail(http.StatusConflict, "", "already exists")
	case errors.Is(err, context.DeadlineExceeded):
		return fail(http.StatusServiceUnavailable, "", "timed out")
	}
	a.log.Error("request failed", "err", err)
	return fail(http.StatusInternalServerError, "", "internal error")
}

// authorize checks the bearer token (RFC 6750 §2.1): missing or wrong is
// 401, counted and reported to the guard; a read-only token's write 403.
func (a *API) authorize(r *http.Request, write bool) *Error {
	src := remoteAddr(r)
	if a.env.Banned != nil && src.IsValid() && a.env.Banned(src) {
		return fail(http.StatusForbidden, "", "source banned")
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || len(token) != tokenLen {
		return a.unauthorized(src, "a bearer token is required")
	}
	hash := HashToken(token)
	t, err := a.env.Store.APITokenByHash(r.Context(), hash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		a.log.Error("token lookup", "err", err)
		return fail(http.StatusServiceUnavailable, "", "token store unavailable")
	}
	// The store found the row by hash; comparing again in constant time
	// keeps the decision itself free of timing differences.
	if err != nil || subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash)) != 1 {
		return a.unauthorized(src, "invalid token")
	}
	if write && t.ReadOnly {
		return fail(http.StatusForbidden, "", "token %q is read-only", t.Name)
	}
	return nil
}

func (a *API) unauthorized(src netip.Addr, why string) *Error {
	a.authFailures.Inc()
	if a.env.AuthFailed != nil && src.IsValid() {
		a.env.AuthFailed(src)
	}
	return fail(http.StatusUnauthorized, "", "%s", why)
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	_ = writeJSON(w, e.Status, e)
}

// decode reads one JSON object into v: unknown fields, wrong types,
// malformed or trailing text are 400 naming what is wrong; a body over
// MaxBody is 413.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				return fail(http.StatusRequestEntityTooLarge, "", "body larger than %d bytes", mbe.Limit)
			}
			return fail(http.StatusBadRequest, "", "malformed JSON: text after the object")
		}
		return nil
	}
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return fail(http.StatusRequestEntityTooLarge, "", "body larger than %d bytes", mbe.Limit)
	case errors.As(err, &se):
		return fail(http.StatusBadRequest, "", "malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fail(http.StatusBadRequest, te.Field, "field %q: want %s", te.Field, te.Type)
	case errors.Is(err, io.EOF):
		return fail(http.StatusBadRequest, "", "empty body: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fail(http.StatusBadRequest, "", "malformed JSON: unexpected end")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f, _ = strconv.Unquote(f)
		return fail(http.StatusBadRequest, f, "unknown field %q", f)
	}
	return fail(http.StatusBadRequest, "", "malformed JSON: %v", err)
}

// page is the paging of a list: ?offset=N&limit=N.
type page struct{ offset, limit int }

// Bounds of paging.
const (
	defaultLimit = 100
	maxLimit     = 1000
	// maxOffset bounds how deep a list pages by offset: the CDRs before
	// the page are read too. Deeper, narrow the query (since=).
	maxOffset = 100000
)

func parsePage(r *http.Request) (page, error) {
	p := page{limit: defaultLimit}
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return p, fail(http.StatusBadRequest, "limit", "limit %q: want 1 to %d", s, maxLimit)
		}
		p.limit = n
	}
	if s := q.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxOffset {
			return p, fail(http.StatusBadRequest, "offset", "offset %q: want 0 to %d", s, maxOffset)
		}
		p.offset = n
	}
	return p, nil
}

// List is a page of a list answer.
type List[T any] struct {
	Items  []T `json:"items"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
	// NextOffset is the offset of the next page; absent on the last.
	NextOffset *int `json:"next_offset,omitempty"`
}

// paged cuts the page p out of all.
func paged[T any](all []T, p page) List[T] {
	l := List[T]{Items: []T{}, Offset: p.offset, Limit: p.limit}
	if p.offset < len(all) {
		end := min(len(all), p.offset+p.limit)
		l.Items = all[p.offset:end]
		if end < len(all) {
			l.NextOffset = &end
		}
	}
	return l
}

// checkQuery refuses query parameters the endpoint does not know.
func checkQuery(r *http.Request, known ...string) error {
	for k := range r.URL.Query() {
		ok := false
		for _, n := range known {
			ok = ok || k == n
		}
		if !ok {
			return fail(http.StatusBadRequest, k, "unknown query parameter %q", k)
		}
	}
	return nil
}
