// Package auth is the server side of SIP digest authentication (RFC 3261
// §22, RFC 7616, RFC 8760): it challenges requests, checks the answers
// against the subscriber store, and says who sent a request.
//
// Challenges offer SHA-256 first and MD5 second (RFC 8760 §2.4), with
// qop=auth and the subscriber's domain as the realm. Nonces are stateless:
// an issue time, random bytes and an HMAC over both and the realm with a
// server secret (see nonce.go), so any node holding the same secret can
// check them, and they expire after Config.NonceTTL. A good password with an
// expired nonce gets a new challenge with stale=true (RFC 7616 §3.3). The
// nonce-count is checked against a bounded in-memory table so a captured
// request cannot be replayed (RFC 7616 §3.4, §5.12).
//
// Subscribers read from the store are kept in memory until the store says
// its subscribers changed, which is asked at most once per
// Config.UserCacheCheck (see usercache.go): a user added, removed or given
// a new password by `hlas user` while the server runs counts within that
// time.
//
// The Authenticator is used as a handler-chain middleware by the server
// (see Authenticate): 401 with WWW-Authenticate when the server is the UAS
// (a registrar, RFC 3261 §22.2), 407 with Proxy-Authenticate when it
// proxies (§22.3). A wrong password or an unknown user gets a fresh
// challenge (the two are indistinguishable from outside), a malformed
// credentials header 400, and a user authenticating as somebody else's AOR
// 403 (RFC 3261 §10.3 step 4). Authentication can be turned off for chosen
// domains (Config.OpenDomains).
package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/store"
)

// Defaults of Config.
const (
	DefaultNonceTTL       = 5 * time.Minute
	DefaultMaxNonces      = 200000
	DefaultUserCacheSize  = 100000
	DefaultUserCacheCheck = time.Second
)

// DefaultAlgorithms are offered when Config.Algorithms is empty: SHA-256
// first, MD5 for the many clients that know nothing else (RFC 8760 §2.4).
var DefaultAlgorithms = []digest.Algorithm{digest.SHA256, digest.MD5}

// DefaultMD5OnlyUserAgents is the default of Config.MD5OnlyUserAgents.
var DefaultMD5OnlyUserAgents = []string{"", "sipsak", "sipp", "baresip v0.", "baresip v1."}

// Kind is the role the server plays for a request, which fixes the status
// and the header pair of a challenge (RFC 3261 §22.1).
type Kind uint8

const (
	// Origin: the server is the UAS (registrar, or any request addressed to
	// it): 401 Unauthorized, WWW-Authenticate and Authorization (§22.2).
	Origin Kind = iota
	// Proxy: the server proxies the request: 407 Proxy Authentication
	// Required, Proxy-Authenticate and Proxy-Authorization (§22.3).
	Proxy
)

// Status returns the status code of a challenge: 401 or 407.
func (k Kind) Status() int {
	if k == Proxy {
		return 407
	}
	return 401
}

// ChallengeHeader returns WWW-Authenticate or Proxy-Authenticate.
func (k Kind) ChallengeHeader() string {
	if k == Proxy {
		return "Proxy-Authenticate"
	}
	return "WWW-Authenticate"
}

// CredentialsHeader returns Authorization or Proxy-Authorization.
func (k Kind) CredentialsHeader() string {
	if k == Proxy {
		return "Proxy-Authorization"
	}
	return "Authorization"
}

// Users is what the Authenticator needs from the subscriber store. A store
// that is also a VersionedUsers (store.Users is) is read once per
// subscriber and then only after its subscribers change
// (Config.UserCacheSize); any other is read on every authenticated
// request.
type Users interface {
	User(ctx context.Context, username, domain string) (store.User, error)
}

// Responder is what a challenge is sent through: the server's ServerTx
// satisfies it.
type Responder interface {
	Respond(res *sip.Response) error
}

// Config is the authentication configuration, as data: the server's YAML
// file maps its "auth" section onto it. Zero fields take the defaults
// named.
type Config struct {
	// OpenDomains are domains whose requests are not authenticated (an
	// open registrar for labs and benchmarks); "*" opens every domain.
	// Authentication is on for every other domain. Default none.
	OpenDomains []string `yaml:"open_domains"`
	// Algorithms are offered in this order, one challenge header each:
	// "SHA-256" and/or "MD5" (the store keeps those two hashes). Default
	// SHA-256, MD5 (RFC 8760 §2.4).
	Algorithms []string `yaml:"algorithms"`
	// NonceTTL is how long a nonce stays valid; a good answer with an
	// older one gets stale=true. Default 5m.
	NonceTTL time.Duration `yaml:"nonce_ttl"`
	// MaxNonces bounds the nonce-count replay table. Default 200000.
	MaxNonces int `yaml:"max_nonces"`
	// MD5OnlyUserAgents lists User-Agent substrings (case-insensitive; ""
	// matches a request without User-Agent) of clients that are offered
	// the MD5 challenge alone. Old clients break on a challenge they do
	// not know instead of ignoring it as RFC 8760 §2.5 says: sipsak 0.9.8
	// and SIPp 3.6 read only the first challenge, baresip 1.0 gives up on
	// the whole 401. Since MD5 is offered to everybody anyway, this
	// weakens nothing. Default: "", "sipsak", "sipp", "baresip v0.",
	// "baresip v1."; an empty list ([]) turns it off.
	MD5OnlyUserAgents []string `yaml:"md5_only_user_agents"`
	// SecretFile holds the nonce-signing secret (hex), created when
	// missing; give nodes the same file to let them check each other's
	// nonces. Default auth.secret in the data directory (the server reads
	// it; see LoadOrCreateSecret).
	SecretFile string `yaml:"secret_file"`
	// UserCacheSize bounds the subscribers kept in memory, so that an
	// authenticated request does not read the store; as many names the
	// store did not know are kept beside them (password guessing against
	// a user that does not exist reads the store once), in a table of
	// their own so a scan of many names cannot push subscribers out. When
	// a table is full a random entry makes room. The whole cache is
	// emptied when the store's subscribers change (any process: `hlas
	// user add/passwd/del` while the server runs), seen within
	// UserCacheCheck, and when the store cannot be read. It needs a store
	// that reports changes (VersionedUsers; both of package store's do).
	// A subscriber costs about 250 bytes (25 MB for 100000), an unknown
	// name about 100. Default 100000; negative turns the cache off (every
	// authenticated request reads the store).
	UserCacheSize int `yaml:"user_cache_size"`
	// UserCacheCheck is how often the store is asked whether subscribers
	// have changed: a password changed, a user added or removed takes
	// effect for authentication within this time. The question is asked
	// by the first request after the interval, not by a timer, so an idle
	// server asks nothing. Default 1s.
	UserCacheCheck time.Duration `yaml:"user_cache_check"`
}

// Validate checks the configuration and names the offending field.
func (c Config) Validate() error {
	for _, name := range c.Algorithms {
		alg, err := digest.ParseAlgorithm(name)
		if err != nil || (alg != digest.MD5 && alg != digest.SHA256) || name == "" {
			return fmt.Errorf("auth algorithms: %q: want SHA-256 or MD5 (the hashes the subscriber store keeps)", name)
		}
	}
	if c.NonceTTL < 0 || c.MaxNonces < 0 {
		return errors.New("auth nonce_ttl and max_nonces must not be negative")
	}
	if c.UserCacheCheck < 0 {
		return errors.New("auth user_cache_check must not be negative")
	}
	for _, d := range c.OpenDomains {
		if d == "" || strings.ContainsAny(d, " :;@<>") {
			return fmt.Errorf("auth open_domains %q: not a domain", d)
		}
	}
	return nil
}

// Env is what an Authenticator needs from the server that runs it.
type Env struct {
	// Secret signs nonces; at least 16 bytes. Required.
	Secret []byte
	// Users is the subscriber store. Required.
	Users Users
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger gets debug and info records with feature=auth.
	Logger *slog.Logger
	// Registerer takes the metrics (namespace hlas, subsystem auth); nil
	// registers nothing.
	Registerer prometheus.Registerer
	// NewResponse builds the responses the Authenticator sends (the server
	// passes its own, which adds the To tag and Server header). Default:
	// sip.NewResponse with a random To tag.
	NewResponse func(req *sip.Request, code int, reason string) *sip.Response
	// Guard, when set, is told the outcome of every check (package
	// security counts password guessing and probing with it) and may hold
	// a challenge back.
	Guard Guard
	// MaxDelayed bounds the challenges held back at once (Guard); beyond
	// it a challenge the Guard wants delayed is not sent at all (a client
	// over UDP retransmits; an attacker's flood costs no memory). Default
	// 10000.
	MaxDelayed int
}

// Guard watches authentication outcomes (see Env.Guard).
type Guard interface {
	// Observe is told the outcome r of a check of a request from src that
	// claimed username@domain, on the worker, before anything is sent. It
	// returns how long to hold back the response to a non-Accepted
	// outcome: 0 sends it at once, a negative delay not at all (the
	// source was banned for this very request). It must not block.
	Observe(src netip.Addr, username, domain string, r Result) time.Duration
}

// Authenticator checks digest credentials. It is safe for concurrent use.
type Authenticator struct {
	cfg    Config
	env    Env
	algs   []digest.Algorithm // offered, in order
	legacy []string           // lower-case User-Agent substrings offered MD5 alone
	nonces nonces
	nc     *ncTable
	users  *userCache // nil: every lookup reads env.Users
	open   map[string]bool
	log    *slog.Logger
	met    *metrics
	// delayed counts the responses Guard held back that are still waiting.
	delayed atomic.Int64
}

// New checks cfg and returns an Authenticator.
func New(cfg Config, env Env) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(env.Secret) < 16 {
		return nil, errors.New("auth: the nonce secret must have at least 16 bytes")
	}
	if env.Users == nil {
		return nil, errors.New("auth: no user store")
	}
	if cfg.NonceTTL == 0 {
		cfg.NonceTTL = DefaultNonceTTL
	}
	algs := DefaultAlgorithms
	if len(cfg.Algorithms) > 0 {
		algs = nil
		for _, name := range cfg.Algorithms {
			alg, _ := digest.ParseAlgorithm(name)
			algs = append(algs, alg)
		}
	}
	if cfg.MaxNonces == 0 {
		cfg.MaxNonces = DefaultMaxNonces
	}
	if cfg.MD5OnlyUserAgents == nil {
		cfg.MD5OnlyUserAgents = DefaultMD5OnlyUserAgents
	}
	if cfg.UserCacheSize == 0 {
		cfg.UserCacheSize = DefaultUserCacheSize
	}
	if cfg.UserCacheCheck == 0 {
		cfg.UserCacheCheck = DefaultUserCacheCheck
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.MaxDelayed <= 0 {
		env.MaxDelayed = 10000
	}
	if env.NewResponse == nil {
		env.NewResponse = defaultResponse
	}
	a := &Authenticator{
		cfg:    cfg,
		env:    env,
		algs:   algs,
		nonces: nonces{secret: env.Secret, ttl: cfg.NonceTTL, skew: 30 * time.Second},
		nc:     newNCTable(cfg.MaxNonces, cfg.NonceTTL),
		open:   make(map[string]bool),
		log:    env.Logger.With("feature", "auth"),
	}
	if slices.Contains(algs, digest.MD5) && len(algs) > 1 {
		for _, ua := range cfg.MD5OnlyUserAgents {
			a.legacy = append(a.legacy, strings.ToLower(ua))
		}
	}
	for _, d := range cfg.OpenDomains {
		a.open[strings.ToLower(d)] = true
	}
	if vu, ok := env.Users.(VersionedUsers); ok && cfg.UserCacheSize > 0 {
		a.users = newUserCache(vu, cfg.UserCacheSize, cfg.UserCacheCheck, a.log)
	} else if cfg.UserCacheSize > 0 {
		a.log.Info("subscriber cache off: the store cannot tell when subscribers change")
	}
	a.met = newMetrics(env.Registerer, a.nc.len, func() int {
		if a.users == nil {
			return 0
		}
		return a.users.len()
	})
	if a.users != nil {
		a.users.met = a.met.cache
	}
	return a, nil
}

func defaultResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(req, code, reason)
	res.AddToTag()
	return res
}

// IsOpen reports whether domain's requests go unauthenticated.
func (a *Authenticator) IsOpen(domain string) bool {
	return a.open["*"] || a.open[strings.ToLower(domain)]
}

// Identity is who sent a request.
type Identity struct {
	// Username and Domain name the subscriber, user@domain.
	Username string
	Domain   string
	// Authenticated is true when digest credentials were checked; false
	// when the domain is open and the identity is merely claimed.
	Authenticated bool
	// Algorithm is the digest algorithm the client answered with.
	Algorithm digest.Algorithm
}

// AOR returns "username@domain".
func (id Identity) AOR() string { return id.Username + "@" + id.Domain }

type ctxKey struct{}

// idContext is a context carrying an Identity, as context.WithValue would
// but in one allocation instead of two (the context and the boxed
// Identity): its Value answers ctxKey with a pointer to its own copy.
type idContext struct {
	context.Context
	id Identity
}

func (c *idContext) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return &c.id
	}
	return c.Context.Value(key)
}

// NewContext returns ctx carrying id, for the handlers after the auth
// middleware.
func NewContext(ctx context.Context, id Identity) context.Context {
	return &idContext{Context: ctx, id: id}
}

// FromContext returns the identity the auth middleware established.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(*Identity)
	if !ok {
		return Identity{}, false
	}
	return *id, true
}

// URIFromContext returns the authenticated identity as sip:user@domain;
// false when the request was not authenticated (no credentials were
// checked, or an open domain). It fits proxy.Env.Identity.
func URIFromContext(ctx context.Context) (sip.URI, bool) {
	id, ok := FromContext(ctx)
	if !ok || !id.Authenticated {
		return sip.URI{}, false
	}
	return sip.URI{Scheme: sip.SchemeSIP, User: id.Username, Host: id.Domain}, true
}

// Outcome is the verdict of Check.
type Outcome uint8

// Outcomes, each with the response it calls for.
const (
	// Accepted: good credentials, or an open domain. Pass the request on.
	Accepted Outcome = iota
	// Challenged: no usable credentials, an unknown user, a wrong
	// password, a stale nonce or a replayed nonce-count: 401 or 407 with a
	// fresh challenge (RFC 3261 §22.2, §22.3).
	Challenged
	// Malformed: the credentials header does not parse or lacks a
	// required parameter: 400 (RFC 7616 §3.4, RFC 2617 §3.2.2.5).
	Malformed
	// Forbidden: good credentials for another user than the one the
	// request claims to be: 403 (RFC 3261 §10.3 step 4).
	Forbidden
	// Failed: the store could not be read: 500.
	Failed
)

// Result is what Check found.
type Result struct {
	Outcome  Outcome
	Identity Identity // for Accepted
	// Stale asks the client to retry with the new nonce without asking the
	// user again: the password was right but the nonce was not usable
	// (RFC 7616 §3.3).
	Stale bool
	// Reason says why in a few words, for logs and a 400's Warning.
	Reason string
}

// Reasons of a Challenged Result that a Guard tells apart: no credentials
// at all (the first request of every client), credentials for a user the
// store does not know, and a wrong password.
const (
	ReasonNoCredentials = "no_credentials"
	ReasonUnknownUser   = "unknown_user"
	ReasonWrongPassword = "wrong_password"
)

// Reasons a request is challenged (also the metric label values).
const (
	reasonNoCredentials = ReasonNoCredentials
	reasonUnknownUser   = ReasonUnknownUser
	reasonWrongPassword = ReasonWrongPassword
	reasonUnsupported   = "unsupported_parameters"
	reasonStale         = "stale_nonce"
	reasonReplay        = "replay"
)

// Check authenticates req as the subscriber username@domain — the AOR the
// request claims (the To of a REGISTER, the From of other requests) — with
// the credentials header that kind names, without sending anything.
func (a *Authenticator) Check(ctx context.Context, req *sip.Request, kind Kind, username, domain string) Result {
	domain = strings.ToLower(domain)
	if a.IsOpen(domain) {
		return Result{Outcome: Accepted, Identity: Identity{Username: username, Domain: domain}}
	}
	var c digest.Credentials
	if res, ok := a.credentials(&c, req, kind, domain); !ok {
		return res
	}
	return a.verify(ctx, &c, req.Method, req.Body, username, domain)
}

// verify checks credentials already chosen for domain against the store,
// the nonce and the nonce-count table, for a request with that method and
// body claiming to be username@domain.
func (a *Authenticator) verify(ctx context.Context, c *digest.Credentials, method string, body []byte, username, domain string) Result {
	alg, err := digest.ParseAlgorithm(c.Algorithm)
	if err != nil || !slices.Contains(a.algs, alg) {
		return Result{Outcome: Challenged, Reason: reasonUnsupported}
	}
	if !strings.EqualFold(c.QOP, "auth") || c.Userhash {
		// Only qop=auth is offered (no RFC 2069 answers without qop, which
		// could be replayed, and no auth-int), and no userhash.
		return Result{Outcome: Challenged, Reason: reasonUnsupported}
	}
	now := a.env.Now()
	issued, ns := a.nonces.check(c.Nonce, domain, now)
	h, err := a.user(ctx, now, c.Username, domain)
	if errors.Is(err, store.ErrNotFound) {
		return Result{Outcome: Challenged, Reason: reasonUnknownUser}
	}
	if err != nil {
		a.log.Error("user lookup", "user", c.Username, "domain", domain, "err", err)
		return Result{Outcome: Failed, Reason: "subscriber store unavailable"}
	}
	ha1 := h.md5
	if alg == digest.SHA256 {
		ha1 = h.sha256
	}
	if !c.Verify(method, body, ha1) {
		return Result{Outcome: Challenged, Reason: reasonWrongPassword}
	}
	// The password is right: a nonce problem now calls for stale=true.
	if ns != nonceFresh {
		return Result{Outcome: Challenged, Stale: true, Reason: reasonStale}
	}
	switch a.nc.use(c.Nonce, issued, c.NC, now) {
	case ncReplay:
		return Result{Outcome: Challenged, Stale: true, Reason: reasonReplay}
	case ncForgotten:
		return Result{Outcome: Challenged, Stale: true, Reason: reasonStale}
	}
	if c.Username != username {
		return Result{Outcome: Forbidden, Reason: fmt.Sprintf("%s@%s may not act for %s@%s", c.Username, domain, username, domain)}
	}
	return Result{Outcome: Accepted, Identity: Identity{Username: username, Domain: domain, Authenticated: true, Algorithm: alg}}
}

// user returns the digest hashes of a subscriber, from the cache when
// there is one.
func (a *Authenticator) user(ctx context.Context, now time.Time, username, domain string) (hashes, error) {
	if a.users != nil {
		return a.users.user(ctx, now, username, domain)
	}
	u, err := a.env.Users.User(ctx, username, domain)
	if err != nil {
		return hashes{}, err
	}
	return hashes{u.HA1MD5, u.HA1SHA256}, nil
}

// IsSubscriber reports whether username@domain is a subscriber, from the
// subscriber cache when there is one: the location service asks it for
// every request to a user with no registration (480 or 404).
func (a *Authenticator) IsSubscriber(ctx context.Context, username, domain string) (bool, error) {
	_, err := a.user(ctx, a.env.Now(), username, domain)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// credentials finds the Digest credentials for realm among the request's
// credentials headers (there may be several, for several realms, RFC 3261
// §22.3) and parses them into c. It returns false and the result to give
// when there are none usable.
func (a *Authenticator) credentials(c *digest.Credentials, req *sip.Request, kind Kind, realm string) (Result, bool) {
	name := kind.CredentialsHeader()
	for i := range req.Fields {
		f := &req.Fields[i]
		if !strings.EqualFold(f.Name, name) {
			continue
		}
		if err := c.Parse(f.Value); err != nil {
			return Result{Outcome: Malformed, Reason: "malformed " + name + " header"}, false
		}
		if !strings.EqualFold(c.Scheme, "Digest") || !strings.EqualFold(c.Realm, realm) {
			// Another scheme (RFC 4475 §3.3.7: treat as absent) or
			// another realm's credentials: not ours to check.
			continue
		}
		if why := checkParams(c); why != "" {
			return Result{Outcome: Malformed, Reason: why}, false
		}
		return Result{}, true
	}
	return Result{Outcome: Challenged, Reason: reasonNoCredentials}, false
}

// checkParams checks what the credentials must carry (RFC 3261 §25.1
// dig-resp, RFC 7616 §3.4): username, nonce, uri and response always;
// cnonce and nc with a qop. The digest uri is not compared with the
// Request-URI (RFC 2617 §3.2.2.5 makes that a SHOULD): SIPp answers with
// its target address, and NATs and edge proxies rewrite Request-URIs. The
// uri is covered by the response hash, and replays are stopped by the
// nonce-count check.
func checkParams(c *digest.Credentials) string {
	switch {
	case c.Username == "":
		return "credentials without username"
	case c.Nonce == "":
		return "credentials without nonce"
	case c.URI == "":
		return "credentials without uri"
	case c.Response == "":
		return "credentials without response"
	case c.QOP != "" && (c.CNonce == "" || c.NC == 0):
		return "credentials with qop need cnonce and nc"
	}
	return ""
}

// Challenge adds to res, the response to req, one challenge header per
// configured algorithm, in order, sharing one new nonce for realm (RFC
// 3261 §22.1, RFC 8760 §2.4) — or the MD5 one alone for a client listed
// in Config.MD5OnlyUserAgents.
//
// The header values are written into one buffer on the stack and become
// one string: a challenge costs one allocation besides the room for the
// headers in res.
func (a *Authenticator) Challenge(res *sip.Response, req *sip.Request, kind Kind, realm string, stale bool) {
	var nb [nonceLen]byte
	nonce := a.nonces.appendNonce(nb[:0], realm, a.env.Now())
	algs := a.algs
	if a.legacyClient(req) {
		algs = md5Only
	}
	var buf [challengeLen]byte
	var endBuf [4]int
	b, ends := buf[:0], endBuf[:0]
	for _, alg := range algs {
		start := len(b)
		ch := digest.Challenge{
			Scheme:    "Digest",
			Realm:     realm,
			Nonce:     noncePlaceholder,
			Stale:     stale,
			Algorithm: alg.String(),
			QOP:       qopAuth,
		}
		b = ch.AppendTo(b)
		// Only parameters of ours, with constant values, follow the
		// nonce: the last nonce=" is the placeholder's.
		i := start + bytes.LastIndex(b[start:], []byte(`nonce="`)) + len(`nonce="`)
		copy(b[i:i+nonceLen], nonce)
		ends = append(ends, len(b))
	}
	values := string(b)
	res.Fields = slices.Grow(res.Fields, len(ends))
	start := 0
	for _, end := range ends {
		res.Add(kind.ChallengeHeader(), values[start:end])
		start = end
	}
}

// challengeLen is the room on the stack for the challenge headers of one
// response (about 90 bytes each and the realm); more costs one more
// allocation.
const challengeLen = 512

// noncePlaceholder holds the place of the nonce while Challenge writes
// the header values: a nonce's length, and like a nonce (base64url)
// nothing to escape in a quoted-string.
const noncePlaceholder = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"

// md5Only and qopAuth are read-only: the algorithms offered to a client
// of Config.MD5OnlyUserAgents, and the qop-options of every challenge.
var (
	md5Only = []digest.Algorithm{digest.MD5}
	qopAuth = []string{"auth"}
)

// Respond sends the response a non-Accepted result calls for.
func (a *Authenticator) Respond(tx Responder, req *sip.Request, kind Kind, domain string, r Result) {
	var res *sip.Response
	switch r.Outcome {
	case Accepted:
		return
	case Challenged:
		res = a.env.NewResponse(req, kind.Status(), "")
		a.Challenge(res, req, kind, strings.ToLower(domain), r.Stale)
	case Malformed:
		res = a.env.NewResponse(req, 400, "")
		res.Add("Warning", `399 hlas "`+strings.ReplaceAll(r.Reason, `"`, `'`)+`"`)
	case Forbidden:
		res = a.env.NewResponse(req, 403, "")
	default:
		res = a.env.NewResponse(req, 500, "")
		res.Add("Retry-After", "5")
	}
	// A rejection keeps no transaction when the transaction layer allows
	// (a password-guessing flood then costs no memory); a retransmitted
	// request simply gets a fresh challenge.
	if sl, ok := tx.(interface{ RespondStateless(*sip.Response) error }); ok {
		_ = sl.RespondStateless(res)
		return
	}
	_ = tx.Respond(res)
}

// Authenticate is the middleware's work: it checks req as username@domain
// (see Check) and either returns the identity, or answers req through tx
// (401/407 with a challenge, 400, 403 or 500) and returns false.
func (a *Authenticator) Authenticate(ctx context.Context, tx Responder, req *sip.Request, kind Kind, username, domain string) (Identity, bool) {
	r := a.Check(ctx, req, kind, username, domain)
	a.met.observe(r)
	var delay time.Duration
	if a.env.Guard != nil {
		if src, ok := tx.(interface{ Source() netip.AddrPort }); ok {
			delay = a.env.Guard.Observe(src.Source().Addr(), username, domain, r)
		}
	}
	// The arguments of a debug record cost allocations even when the
	// record is dropped: they are built only when it is not.
	debug := a.log.Enabled(ctx, slog.LevelDebug)
	switch r.Outcome {
	case Accepted:
		if r.Identity.Authenticated && debug {
			a.log.Debug("authenticated", "method", req.Method, "aor", r.Identity.AOR(), "algorithm", r.Identity.Algorithm.String())
		}
		return r.Identity, true
	case Forbidden:
		a.log.Info("forbidden", "method", req.Method, "why", r.Reason, "call_id", req.CallID)
	case Malformed:
		if debug {
			a.log.Debug("malformed credentials", "method", req.Method, "why", r.Reason, "call_id", req.CallID)
		}
	case Challenged:
		if debug {
			a.log.Debug("challenge", "method", req.Method, "aor", username+"@"+domain, "why", r.Reason, "stale", r.Stale)
		}
	}
	if delay < 0 {
		return Identity{}, false
	}
	if delay > 0 {
		a.respondLater(delay, tx, req, kind, domain, r)
		return Identity{}, false
	}
	a.Respond(tx, req, kind, domain, r)
	return Identity{}, false
}

// respondLater sends the response to r after delay, from a timer, so the
// worker does not wait: the Guard slows down the challenges of an account
// under a password-guessing attack without refusing its owner. At most
// Env.MaxDelayed wait at once; beyond that the response is dropped.
func (a *Authenticator) respondLater(delay time.Duration, tx Responder, req *sip.Request, kind Kind, domain string, r Result) {
	if a.delayed.Add(1) > int64(a.env.MaxDelayed) {
		a.delayed.Add(-1)
		a.met.delayDropped.Inc()
		return
	}
	a.met.delayed.Inc()
	time.AfterFunc(delay, func() {
		defer a.delayed.Add(-1)
		a.Respond(tx, req, kind, domain, r)
	})
}

// NewUser returns the subscriber username@domain with the digest hashes of
// password for both algorithms (RFC 7616 §3.4.2), realm = domain. The
// password itself is not kept.
func NewUser(username, domain, password string) store.User {
	domain = strings.ToLower(domain)
	return store.User{
		Username:  username,
		Domain:    domain,
		HA1MD5:    digest.HA1(digest.MD5, username, domain, password, "", ""),
		HA1SHA256: digest.HA1(digest.SHA256, username, domain, password, "", ""),
	}
}

// Target tells the middleware whether a request is to be authenticated,
// in which role, and as whom: the AOR the request claims. ok false passes
// the request on untouched.
type Target func(req *sip.Request) (kind Kind, username, domain string, ok bool)

// Middleware returns the authentication step of the handler chain (RFC
// 3261 §22): a request that target selects is authenticated (Authenticate)
// and either answered here — 401/407 with a challenge, 400, 403, 500 — or
// passed on with its identity in the context (FromContext). Requests
// target does not select pass untouched. The server uses one instance with
// the registrar's target (401 for REGISTER) and the proxy one with
// ProxyTarget (407).
func (a *Authenticator) Middleware(target Target) handler.Middleware {
	return func(next handler.Handler) handler.Handler {
		return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
			kind, user, domain, ok := target(req)
			if !ok {
				next.ServeSIP(ctx, tx, req)
				return
			}
			id, ok := a.Authenticate(ctx, tx, req, kind, user, domain)
			if !ok {
				return
			}
			next.ServeSIP(NewContext(ctx, id), tx, req)
		})
	}
}

// ProxyTarget is the Target for requests the server proxies (RFC 3261
// §22.3): a request whose From names a user of one of our domains (domain
// maps the From URI to it, as registrar.Config.Domain does) must prove it
// with Proxy-Authorization, or gets 407. ACK and CANCEL cannot be
// challenged (§22.1) and pass, as do requests from other domains (calls
// to our users from outside). A To tag does not exempt a request: it
// costs nothing to forge, so only the caller, which knows whether the
// request came along a route set it recorded, may pass an in-dialog
// request by without this step.
func ProxyTarget(domain func(u *sip.URI) (string, bool)) Target {
	return func(req *sip.Request) (Kind, string, string, bool) {
		if req.Method == sip.ACK || req.Method == sip.CANCEL || !req.From.URI.IsSIP() || req.From.URI.User == "" {
			return Proxy, "", "", false
		}
		d, ok := domain(&req.From.URI)
		if !ok {
			return Proxy, "", "", false
		}
		return Proxy, sip.Unescape(req.From.URI.User), d, true
	}
}

// legacyClient reports a client offered MD5 alone (Config.MD5OnlyUserAgents).
func (a *Authenticator) legacyClient(req *sip.Request) bool {
	if len(a.legacy) == 0 {
		return false
	}
	ua := req.Get("User-Agent")
	for _, l := range a.legacy {
		if l == "" && ua == "" || l != "" && containsLower(ua, l) {
			return true
		}
	}
	return false
}

// containsLower reports whether strings.ToLower(s) contains lower, a
// lower-case string, without building the lower-case copy when s is ASCII
// (as User-Agent values are).
func containsLower(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.Contains(strings.ToLower(s), lower)
		}
	}
	for i := 0; i+len(lower) <= len(s); i++ {
		j := 0
		for j < len(lower) {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				break
			}
			j++
		}
		if j == len(lower) {
			return true
		}
	}
	return false
}
