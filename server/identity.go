package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/stir"
)

// Identity is the caller-identity section of the configuration: who the
// server says a caller is (P-Asserted-Identity, RFC 3325) and STIR/SHAKEN
// (RFC 8224, 8225, 8588). See docs/identity.md.
type Identity struct {
	// Assert puts a P-Asserted-Identity naming the authenticated user on
	// requests of our users, and removes P-Asserted-Identity and
	// P-Preferred-Identity from requests of untrusted sources, so that
	// only an identity the server vouches for travels on. Default true.
	// Untrusted sources' verstat parameters are removed while this or
	// STIR is on.
	Assert *bool `yaml:"assert"`
	// STIR signs our users' calls and verifies those of trusted peers.
	STIR STIR `yaml:"stir"`
}

// STIR configures the STIR/SHAKEN authentication (signing) and
// verification services.
type STIR struct {
	// Key is a PEM file with the EC P-256 private key that signs (SEC 1
	// or PKCS #8). Signing is on when it is set, and needs X5U.
	Key string `yaml:"key"`
	// X5U is the HTTPS URL where verifiers fetch the certificate (chain)
	// of Key: the info parameter of the Identity header and the x5u of
	// the PASSporT.
	X5U string `yaml:"x5u"`
	// Numbers lists, per user (user@domain), the telephone numbers it may
	// call from with full attestation, besides its user name when that is
	// a number; a From presenting one is asserted as that number.
	Numbers map[string][]string `yaml:"numbers"`
	// AttestOwn is the attestation of a call of an authenticated user
	// from one of its numbers. Default A.
	AttestOwn string `yaml:"attest_own"`
	// AttestOther is that of a call of an authenticated user presenting
	// another number. Default B.
	AttestOther string `yaml:"attest_other"`
	// AttestTrusted, when set (C, normally), signs the calls that come
	// from trusted peers without an Identity header (a gateway's traffic
	// entering the network). Default: they are not signed.
	AttestTrusted string `yaml:"attest_trusted"`
	// OrigID is the origination identifier (a UUID) of the PASSporTs.
	// Default: one made at start.
	OrigID string `yaml:"origid"`

	// Roots is a PEM file of the certificate authorities (the STI-PA's,
	// or an operator's) that signers' certificates must chain to.
	// Verification is on when it is set: INVITEs from trusted peers
	// carrying Identity are verified, and the result goes on as verstat
	// (ATIS-1000074) in P-Asserted-Identity (or From).
	Roots string `yaml:"roots"`
	// FetchCA is a PEM file of the authorities the HTTPS servers of x5u
	// URLs are checked against. Default the system's.
	FetchCA string `yaml:"fetch_ca"`
	// Require lists sources (IP addresses or CIDR prefixes) whose calls
	// must carry an Identity header: without one they get 428 Use
	// Identity Header.
	Require []string `yaml:"require"`
	// Reject lists sources (IP addresses or CIDR prefixes; 0.0.0.0/0 and
	// ::/0 for all) whose calls are refused when their Identity fails:
	// 403 Stale Date, 436 Bad Identity Info, 437 Unsupported Credential or
	// 438 Invalid Identity Header. Calls of other sources go on with
	// verstat TN-Validation-Failed and the code in a Reason header (RFC
	// 8224 §6.2.2), for the called party to decide. Default none.
	Reject []string `yaml:"reject"`
	// Timeout bounds a certificate fetch. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAge is how old (or how far in the future) a PASSporT's iat may
	// be. Default 60s (RFC 8224 §6.2.1).
	MaxAge time.Duration `yaml:"max_age"`
	// CacheTTL is how long a fetched certificate is kept (shorter when
	// the server's Cache-Control says so). Default 1h.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

func (c Identity) assert() bool { return c.Assert == nil || *c.Assert }

func (c Identity) validate() error {
	st := c.STIR
	if (st.Key == "") != (st.X5U == "") {
		return errors.New("config identity.stir: key and x5u go together")
	}
	if st.X5U != "" && !strings.HasPrefix(st.X5U, "https://") {
		return fmt.Errorf("config identity.stir.x5u %q: want an https URL", st.X5U)
	}
	for name, a := range map[string]string{"attest_own": st.AttestOwn, "attest_other": st.AttestOther, "attest_trusted": st.AttestTrusted} {
		if a != "" && !stir.Attestation(a).Valid() {
			return fmt.Errorf("config identity.stir.%s %q: want A, B or C", name, a)
		}
	}
	for name, list := range map[string][]string{"require": st.Require, "reject": st.Reject} {
		for i, s := range list {
			if _, err := parsePrefixOrAddr(s); err != nil {
				return fmt.Errorf("config identity.stir.%s[%d] %q: want an IP address or CIDR prefix", name, i, s)
			}
		}
	}
	if len(st.Require) > 0 && st.Roots == "" {
		return errors.New("config identity.stir.require: needs roots (verification)")
	}
	if st.Timeout < 0 || st.MaxAge < 0 || st.CacheTTL < 0 {
		return errors.New("config identity.stir: timeout, max_age and cache_ttl must not be negative")
	}
	for aor, nums := range st.Numbers {
		for _, n := range nums {
			if _, ok := stir.NormalizeTN(strings.ReplaceAll(n, " ", "")); !ok {
				return fmt.Errorf("config identity.stir.numbers[%s] %q: not a telephone number", aor, n)
			}
		}
	}
	return nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// identity is the server's caller-identity step, built from Identity.
type identity struct {
	s       *Server
	log     *slog.Logger
	assert  bool
	signer  *stir.Signer
	verify  *stir.Verifier
	origID  string
	numbers map[string]map[string]bool // user → numbers of its own
	own     stir.Attestation
	other   stir.Attestation
	gateway stir.Attestation // "" when trusted peers' calls are not signed
	require []netip.Prefix
	reject  []netip.Prefix
	timeout time.Duration
	// pool bounds the verifications waiting for a certificate fetch.
	pool chan struct{}

	results *prometheus.CounterVec
}

// maxFetching bounds the verifications waiting on a certificate fetch at
// once; beyond it a call that needs one gets 503 with Retry-After.
const maxFetching = 64

func newIdentity(s *Server, c Identity, log *slog.Logger) (*identity, error) {
	id := &identity{s: s, log: log.With("feature", "identity"), assert: c.assert(),
		own: "A", other: "B", gateway: stir.Attestation(c.STIR.AttestTrusted), origID: c.STIR.OrigID,
		timeout: c.STIR.Timeout, pool: make(chan struct{}, maxFetching)}
	if c.STIR.AttestOwn != "" {
		id.own = stir.Attestation(c.STIR.AttestOwn)
	}
	if c.STIR.AttestOther != "" {
		id.other = stir.Attestation(c.STIR.AttestOther)
	}
	if id.timeout == 0 {
		id.timeout = 2 * time.Second
	}
	if c.STIR.Key != "" {
		pem, err := os.ReadFile(c.STIR.Key)
		if err != nil {
			return nil, fmt.Errorf("config identity.stir.key: %w", err)
		}
		if id.signer, err = stir.NewSigner(pem, c.STIR.X5U); err != nil {
			return nil, fmt.Errorf("config identity.stir.key: %w", err)
		}
		if id.origID == "" {
			id.origID = stir.NewOrigID()
		}
	}
	id.numbers = map[string]map[string]bool{}
	for aor, nums := range c.STIR.Numbers {
		set := map[string]bool{}
		for _, n := range nums {
			tn, _ := stir.NormalizeTN(strings.ReplaceAll(n, " ", "")) // "+420 222 333 444" as written by people
			set[tn] = true
		}
		id.numbers[strings.ToLower(aor)] = set
	}
	for _, r := range c.STIR.Require {
		p, _ := parsePrefixOrAddr(r)
		id.require = append(id.require, p)
	}
	for _, r := range c.STIR.Reject {
		p, _ := parsePrefixOrAddr(r)
		id.reject = append(id.reject, p)
	}
	if c.STIR.Roots != "" {
		roots, err := loadPool(c.STIR.Roots)
		if err != nil {
			return nil, fmt.Errorf("config identity.stir.roots: %w", err)
		}
		client := &http.Client{Timeout: id.timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirects are not followed")
		}}
		tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, Proxy: nil,
			MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute, TLSHandshakeTimeout: id.timeout}
		if c.STIR.FetchCA != "" {
			if tr.TLSClientConfig.RootCAs, err = loadPool(c.STIR.FetchCA); err != nil {
				return nil, fmt.Errorf("config identity.stir.fetch_ca: %w", err)
			}
		}
		client.Transport = tr
		if id.verify, err = stir.NewVerifier(stir.VerifierConfig{Roots: roots, Client: client, Timeout: id.timeout,
			MaxAge: c.STIR.MaxAge, CacheTTL: c.STIR.CacheTTL}); err != nil {
			return nil, fmt.Errorf("config identity.stir: %w", err)
		}
	}
	id.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hlas", Subsystem: "identity", Name: "stir_total",
		Help: "STIR/SHAKEN outcomes: signed (by attestation), verified, failed (by code), missing (428), busy (503: too many fetches).",
	}, []string{"result"})
	s.reg.MustRegister(id.results)
	return id, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in " + file)
	}
	return pool, nil
}

// Middleware is the identity step of the handler chain, after
// authentication: P-Asserted-Identity for our users, removed from
// untrusted sources; Identity signed for our users' calls to telephone
// numbers, verified on trusted peers' calls.
func (id *identity) Middleware(next Handler) Handler {
	if !id.assert && id.signer == nil && id.verify == nil {
		return next
	}
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if req.Method == sip.ACK || req.Method == sip.CANCEL {
			next.ServeSIP(ctx, tx, req)
			return
		}
		trusted := id.s.trustedTx(tx)
		user, authed := auth.FromContext(ctx)
		authed = authed && user.Authenticated
		// The request is shared with its server transaction (whose timer
		// may build a 100 Trying from it meanwhile): changes go to a copy,
		// made at the first change, which the rest of the chain gets.
		copied := false
		edit := func() {
			if !copied {
				req, copied = editableCopy(req), true
			}
		}
		if !trusted {
			if id.assert && (req.Has("P-Asserted-Identity") || req.Has("P-Preferred-Identity")) {
				edit()
				req.Del("P-Asserted-Identity")
				req.Del("P-Preferred-Identity")
			}
			if (id.signer != nil || id.verify != nil) && req.Has("Identity") {
				// An Identity is ours to add (for our users) or a
				// trusted peer's to pass; anyone else's is not believed.
				edit()
				req.Del("Identity")
			}
			// Nor is a verification result: a phone shows verstat as a
			// verified caller, and only a verifier may write it.
			if needsVerstatDrop(req) {
				edit()
				dropVerstat(req)
			}
			if id.assert && authed && req.To.Tag() == "" {
				edit()
				req.Add("P-Asserted-Identity", id.assertedIdentity(req, user))
			}
		}
		if req.Method != sip.INVITE || req.To.Tag() != "" {
			next.ServeSIP(ctx, tx, req)
			return
		}
		switch {
		case !trusted && authed && id.signer != nil:
			edit()
			id.sign(req, user.AOR(), false)
		case trusted && id.verify != nil && req.Get("Identity") != "":
			edit()
			if !id.verifyCall(ctx, tx, req, next) {
				return // answered, or handed to the pool which goes on
			}
		case trusted && id.verify != nil && id.required(tx.Source().Addr()):
			id.results.WithLabelValues("missing").Inc()
			res := id.s.response(req, stir.CodeUseIdentityHeader, "Use Identity Header")
			_ = tx.Respond(res)
			return
		case trusted && id.signer != nil && id.gateway != "" && req.Get("Identity") == "":
			edit()
			id.sign(req, "", true)
		}
		next.ServeSIP(ctx, tx, req)
	})
}

// editableCopy returns a copy of req whose header fields and From can be
// changed without touching req's (typed lists other than Fields are
// shared: the identity step does not change them).
func editableCopy(req *sip.Request) *sip.Request {
	cp := *req
	cp.Fields = slices.Clone(req.Fields)
	return &cp
}

// needsVerstatDrop reports whether dropVerstat would change req.
func needsVerstatDrop(req *sip.Request) bool {
	if hasVerstat(req.From.URI.User) {
		return true
	}
	for i := range req.Fields {
		f := &req.Fields[i]
		if hasVerstat(f.Value) && strings.EqualFold(sip.CanonicalName(f.Name), "P-Asserted-Identity") {
			return true
		}
	}
	return false
}

// assertedIdentity is the P-Asserted-Identity of an authenticated user:
// its AOR, or, when its From presents one of its numbers (identity.stir.
// numbers), that number as a sip URI with user=phone, which the server
// vouches for and signs with attestation A; with the display name of its
// From.
func (id *identity) assertedIdentity(req *sip.Request, user auth.Identity) string {
	u := "<sip:" + escapeUser(user.Username) + "@" + user.Domain + ">"
	if own := id.numbers[strings.ToLower(user.AOR())]; len(own) > 0 {
		num, _, _ := strings.Cut(sip.Unescape(req.From.URI.User), ";")
		if tn, ok := stir.NormalizeTN(num); ok && own[tn] {
			u = "<sip:" + escapeUser(num) + "@" + user.Domain + ";user=phone>"
		}
	}
	if n := req.From.Display; n != "" {
		return n + " " + u // as written: quoted or tokens
	}
	return u
}

// dropVerstat removes the verstat parameters a request from an untrusted
// source carries in its From and P-Asserted-Identity.
func dropVerstat(req *sip.Request) {
	if hasVerstat(req.From.URI.User) {
		req.From.URI.User = stripVerstat(req.From.URI.User)
	}
	for i := range req.Fields {
		f := &req.Fields[i]
		if hasVerstat(f.Value) && strings.EqualFold(sip.CanonicalName(f.Name), "P-Asserted-Identity") {
			f.Value = withoutVerstat(f.Value)
		}
	}
}

// hasVerstat reports whether s holds ";verstat=" in any case.
func hasVerstat(s string) bool {
	const p = ";verstat="
	for i := strings.IndexByte(s, ';'); i >= 0 && len(s)-i >= len(p); {
		if strings.EqualFold(s[i:i+len(p)], p) {
			return true
		}
		j := strings.IndexByte(s[i+1:], ';')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// withoutVerstat removes verstat from the URIs of a header value: each
// name-addr's (a tel URI's parameters, a sip URI's user part), or the
// addr-spec's when there is no angle bracket.
func withoutVerstat(value string) string {
	if strings.IndexByte(value, '<') < 0 {
		return stripURIVerstat(value)
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(value, '<')
		j := strings.IndexByte(value[max(i, 0):], '>')
		if i < 0 || j < 0 {
			b.WriteString(value)
			return b.String()
		}
		b.WriteString(value[:i+1])
		b.WriteString(stripURIVerstat(value[i+1 : i+j]))
		value = value[i+j:]
	}
}

func stripURIVerstat(uri string) string {
	if at := strings.IndexByte(uri, '@'); at >= 0 {
		return stripVerstat(uri[:at]) + uri[at:]
	}
	return stripVerstat(uri) // tel:
}

func (id *identity) required(ip netip.Addr) bool { return inPrefixes(id.require, ip) }

func inPrefixes(list []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// sign adds an Identity header to a call to a telephone number: attested
// A when the caller is an authenticated user calling from its own number,
// B when from another, and the gateway attestation for a trusted peer's
// call. Calls that are not between telephone numbers are left alone.
func (id *identity) sign(req *sip.Request, aor string, gateway bool) {
	orig, ok := stir.NormalizeTN(callingNumber(req))
	if !ok {
		return
	}
	dest, ok := stir.NormalizeTN(sip.Unescape(req.URI.User))
	if !ok {
		return
	}
	attest := id.gateway
	if !gateway {
		attest = id.other
		user, _, _ := strings.Cut(aor, "@")
		if tn, ok := stir.NormalizeTN(user); ok && tn == orig || id.numbers[strings.ToLower(aor)][orig] {
			attest = id.own
		}
	}
	h, err := id.signer.Sign(orig, dest, attest, id.origID, time.Now())
	if err != nil {
		id.log.Error("sign", "err", err)
		return
	}
	req.Del("Identity")
	req.Add("Identity", h)
	id.results.WithLabelValues("signed_" + string(attest)).Inc()
}

// callingNumber is the user part of the first P-Asserted-Identity, else of
// From (the caller the server or its trusted peer vouches for).
func callingNumber(req *sip.Request) string {
	if pai := req.Get("P-Asserted-Identity"); pai != "" {
		if u := uriUser(pai); u != "" {
			return u
		}
	}
	return sip.Unescape(req.From.URI.User)
}

// calledNumber is the user part of To, else of the Request-URI.
func calledNumber(req *sip.Request) string {
	if u := sip.Unescape(req.To.URI.User); u != "" {
		return u
	}
	return sip.Unescape(req.URI.User)
}

// uriUser returns the user part (or tel number) of the URI of a name-addr
// or addr-spec header value, without its parameters.
func uriUser(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.TrimSpace(v)
	lower := strings.ToLower(v)
	switch {
	case strings.HasPrefix(lower, "tel:"):
		v = v[4:]
		if i := strings.IndexByte(v, ';'); i >= 0 {
			v = v[:i]
		}
		return v
	case strings.HasPrefix(lower, "sip:"), strings.HasPrefix(lower, "sips:"):
		v = v[strings.IndexByte(v, ':')+1:]
		at := strings.IndexByte(v, '@')
		if at < 0 {
			return ""
		}
		v = v[:at]
		if i := strings.IndexByte(v, ';'); i >= 0 {
			v = v[:i]
		}
		return sip.Unescape(v)
	}
	return ""
}

// verifyCall verifies the Identity of a trusted peer's INVITE. With the
// certificate cached it does so here and reports whether the chain goes
// on; otherwise it hands the request to a goroutine of the bounded pool,
// which fetches, verifies and runs the rest of the chain itself (so no
// worker waits on an HTTPS server), and reports false.
func (id *identity) verifyCall(ctx context.Context, tx ServerTx, req *sip.Request, next Handler) bool {
	h := req.Get("Identity")
	if id.verify.Cached(h) {
		return id.apply(tx, req, id.verify.Verify(ctx, h, callingNumber(req), calledNumber(req)))
	}
	select {
	case id.pool <- struct{}{}:
	default:
		id.results.WithLabelValues("busy").Inc()
		_ = tx.Respond(id.s.unavailable(req))
		return false
	}
	if !id.s.goAsync(func() {
		defer func() { <-id.pool }()
		vctx, cancel := context.WithTimeout(context.Background(), id.timeout+time.Second)
		r := id.verify.Verify(vctx, h, callingNumber(req), calledNumber(req))
		cancel()
		if id.apply(tx, req, r) {
			id.s.serveOn(ctx, tx, req, next)
		}
	}) {
		<-id.pool
		_ = tx.Respond(id.s.unavailable(req))
	}
	return false
}

// apply acts on a verification: verstat on the caller's identity, and a
// refusal or a Reason header when it failed. It reports whether the call
// goes on.
func (id *identity) apply(tx ServerTx, req *sip.Request, r stir.Result) bool {
	if r.Valid() {
		id.results.WithLabelValues("verified").Inc()
		markVerstat(req, r.Verstat)
		return true
	}
	id.results.WithLabelValues("failed_" + strconv.Itoa(r.Code)).Inc()
	id.log.Info("identity failed", "call_id", req.CallID, "source", tx.Source().String(), "code", r.Code, "err", r.Err)
	if inPrefixes(id.reject, tx.Source().Addr()) {
		_ = tx.Respond(id.s.response(req, r.Code, r.Reason))
		return false
	}
	req.Add("Reason", `SIP;cause=`+strconv.Itoa(r.Code)+`;text="`+r.Reason+`"`)
	markVerstat(req, r.Verstat)
	return true
}

// markVerstat puts verstat (ATIS-1000074 §5.3.1) on the user part of the
// first P-Asserted-Identity, else of the From: the number the called
// phone shows is the one it qualifies.
func markVerstat(req *sip.Request, v string) {
	for i := range req.Fields {
		f := &req.Fields[i]
		if strings.EqualFold(f.Name, "P-Asserted-Identity") {
			if nv, ok := withVerstat(f.Value, v); ok {
				f.Value = nv
				return
			}
		}
	}
	if req.From.URI.User != "" {
		req.From.URI.User = stripVerstat(req.From.URI.User) + ";verstat=" + v
	}
}

// withVerstat adds ;verstat=v to the number of a name-addr or addr-spec:
// a tel URI's parameters, or a sip URI's user part (RFC 3261 §19.1.6).
// A verstat already there is replaced.
func withVerstat(value, v string) (string, bool) {
	start, end := 0, len(value)
	if i := strings.IndexByte(value, '<'); i >= 0 {
		j := strings.IndexByte(value[i:], '>')
		if j < 0 {
			return value, false
		}
		start, end = i+1, i+j
	}
	uri := value[start:end]
	lower := strings.ToLower(uri)
	var out string
	switch {
	case strings.HasPrefix(lower, "tel:"):
		num, params, _ := strings.Cut(uri, ";")
		out = num + ";verstat=" + v
		for _, p := range strings.Split(params, ";") {
			if p != "" && !strings.HasPrefix(strings.ToLower(p), "verstat=") {
				out += ";" + p
			}
		}
	case strings.HasPrefix(lower, "sip:"), strings.HasPrefix(lower, "sips:"):
		colon := strings.IndexByte(uri, ':')
		at := strings.IndexByte(uri, '@')
		if at < 0 {
			return value, false
		}
		out = uri[:colon+1] + stripVerstat(uri[colon+1:at]) + ";verstat=" + v + uri[at:]
	default:
		return value, false
	}
	return value[:start] + out + value[end:], true
}

// stripVerstat removes a verstat parameter from a user part.
func stripVerstat(user string) string {
	parts := strings.Split(user, ";")
	out := parts[0]
	for _, p := range parts[1:] {
		if !strings.HasPrefix(strings.ToLower(p), "verstat=") {
			out += ";" + p
		}
	}
	return out
}

// escapeUser escapes what may not stand in a user part (RFC 3261 §25.1:
// unreserved, user-unreserved and escaped).
func escapeUser(u string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-_.!~*'()&=+$,;?/", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
