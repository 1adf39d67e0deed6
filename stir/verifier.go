package stir

import (
	"container/list"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The SIP status codes a verification can end in (RFC 8224 §6.2.2, §13.2).
const (
	CodeValid                 = 0
	CodeStaleDate             = 403
	CodeUseIdentityHeader     = 428
	CodeBadIdentityInfo       = 436
	CodeUnsupportedCredential = 437
	CodeInvalidIdentityHeader = 438
)

// reasonPhrase is the reason phrase RFC 8224 gives each code.
func reasonPhrase(code int) string {
	switch code {
	case CodeStaleDate:
		return "Stale Date"
	case CodeUseIdentityHeader:
		return "Use Identity Header"
	case CodeBadIdentityInfo:
		return "Bad Identity Info"
	case CodeUnsupportedCredential:
		return "Unsupported Credential"
	case CodeInvalidIdentityHeader:
		return "Invalid Identity Header"
	}
	return ""
}

// The verstat values of ATIS-1000074 §5.3.1, carried as a parameter of
// the P-Asserted-Identity (or From) URI towards the called user.
const (
	VerstatPassed = "TN-Validation-Passed"
	VerstatFailed = "TN-Validation-Failed"
	VerstatNone   = "No-TN-Validation"
)

// VerifierConfig configures a Verifier. Zero fields take the defaults
// given with them.
type VerifierConfig struct {
	// Roots are the trust anchors: the STI-PA's (or the operator's) CA
	// certificates. Required; the system roots are never used.
	Roots *x509.CertPool
	// Client fetches certificates. Default: a client with Timeout, TLS 1.2
	// or later, at most 3 redirects (to https unless AllowHTTP). Its TLS
	// trust (the HTTPS server's certificate) is separate from Roots.
	Client *http.Client
	// Timeout bounds one certificate fetch. Default 2s.
	Timeout time.Duration
	// CacheSize is how many certificates (by x5u) are kept, least recently
	// used dropped first. Default 1000.
	CacheSize int
	// CacheTTL is how long a fetched certificate is kept; a Cache-Control
	// max-age from the server shortens it (but not below NegativeTTL).
	// Default 1h.
	CacheTTL time.Duration
	// NegativeTTL is how long a failure to get or accept a certificate is
	// remembered, so an unreachable x5u does not cost a fetch per call.
	// Default 30s.
	NegativeTTL time.Duration
	// MaxAge is how far iat may be from now, either way (RFC 8224 §4.1
	// and §6.2.1: 60 s). Default 60s.
	MaxAge time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxCertSize bounds the body of an x5u response. Default 64 KiB.
	MaxCertSize int
	// MaxFetches bounds the certificate fetches in flight (each for a
	// different x5u): a flood of calls naming new URLs cannot make the
	// verifier open unbounded connections. Over it a verification fails
	// with 436 at once. Default 32.
	MaxFetches int
	// AllowHTTP accepts http x5u URLs; otherwise they fail with 436.
	AllowHTTP bool
}

// Verifier is the verification service of RFC 8224 §6.2 for SHAKEN. It is
// safe for concurrent use.
type Verifier struct {
	cfg      VerifierConfig
	fetchSem chan struct{}

	mu       sync.Mutex
	lru      *list.List               // of *certEntry, most recently used first
	entries  map[string]*list.Element // by x5u
	inflight map[string]*fetchCall    // by x5u
	stats    VerifierStats
}

// VerifierStats counts what the certificate cache did, for metrics.
type VerifierStats struct {
	Hits      uint64 // certificate (or recent failure) found in the cache
	Fetches   uint64 // fetches started
	Failures  uint64 // fetches that gave no usable certificate (436 or 437)
	Coalesced uint64 // verifications that waited for another's fetch
	Refused   uint64 // fetches not started: MaxFetches in flight
	Cached    int    // entries in the cache now
}

// Stats returns the counters since NewVerifier.
func (v *Verifier) Stats() VerifierStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.stats
	s.Cached = v.lru.Len()
	return s
}

// certEntry is what the cache knows of one x5u: a usable certificate, or
// why there is none (code and err).
type certEntry struct {
	x5u     string
	expires time.Time

	code int
	err  error

	leaf          *x509.Certificate
	pub           *ecdsa.PublicKey
	intermediates *x509.CertPool
	tnAuth        TNAuthList
	// The chain was verified; it stays valid between these times.
	validFrom, validUntil time.Time
}

type fetchCall struct {
	done  chan struct{}
	entry *certEntry
}

// NewVerifier checks cfg, fills in its defaults and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Roots == nil {
		return nil, errors.New("stir: VerifierConfig.Roots is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 1000
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Hour
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = 30 * time.Second
	}
	if cfg.NegativeTTL > cfg.CacheTTL {
		cfg.NegativeTTL = cfg.CacheTTL
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxCertSize <= 0 {
		cfg.MaxCertSize = 64 << 10
	}
	if cfg.MaxFetches <= 0 {
		cfg.MaxFetches = 32
	}
	if cfg.Client == nil {
		cfg.Client = defaultClient(cfg.Timeout, cfg.AllowHTTP)
	}
	return &Verifier{
		cfg:      cfg,
		fetchSem: make(chan struct{}, cfg.MaxFetches),
		lru:      list.New(),
		entries:  make(map[string]*list.Element),
		inflight: make(map[string]*fetchCall),
	}, nil
}

func defaultClient(timeout time.Duration, allowHTTP bool) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("stir: x5u: too many redirects")
			}
			if req.URL.Scheme != "https" && !(allowHTTP && req.URL.Scheme == "http") {
				return fmt.Errorf("stir: x5u: redirect to %s", req.URL.Scheme)
			}
			return nil
		},
	}
}

// Result is the outcome of a verification.
type Result struct {
	// Code is 0 when the Identity header is valid, else the SIP status code
	// the policy would answer with (or carry in a Reason header):
	// 403 Stale Date, 428 Use Identity Header (no header given), 436 Bad
	// Identity Info, 437 Unsupported Credential, 438 Invalid Identity Header.
	Code int
	// Reason is the reason phrase of Code.
	Reason string
	// PASSporT is what the header claimed, as far as it could be decoded.
	PASSporT PASSporT
	// Verstat is the ATIS-1000074 verification status to pass downstream.
	Verstat string
	// SPC is the service provider code of the signer's certificate
	// (TNAuthList), set when the certificate was accepted.
	SPC string
	// Err says what went wrong, for logs; nil when Code is 0.
	Err error
}

// Valid reports whether the header verified.
func (r Result) Valid() bool { return r.Code == CodeValid }

func fail(code int, p PASSporT, err error) Result {
	return Result{Code: code, Reason: reasonPhrase(code), PASSporT: p, Verstat: VerstatFailed, Err: err}
}

// Verify checks one Identity header value (RFC 8224 §6.2, RFC 8588,
// ATIS-1000074 §5.3) against the calling number (from P-Asserted-Identity
// or From) and the called number (To or Request-URI), raw URIs or
// numbers, normalized here with NormalizeTN.
//
// The checks that need no network come first — syntax, alg/typ/ppt, x5u
// equal to info, iat within MaxAge, orig and dest — so a stale or
// misaddressed header never makes the verifier fetch anything. Then the
// certificate at x5u is fetched (or taken from the cache), its chain
// checked against Roots at Now with a TNAuthList required on the leaf, and
// last the signature. An empty identity gives 428 with verstat
// No-TN-Validation; whether that refuses the call is the caller's policy.
// ctx bounds the wait for a certificate fetch.
func (v *Verifier) Verify(ctx context.Context, identity, orig, dest string) Result {
	if trimLWS(identity) == "" {
		return Result{Code: CodeUseIdentityHeader, Reason: reasonPhrase(CodeUseIdentityHeader),
			Verstat: VerstatNone, Err: errIdentityEmpty}
	}
	token, params, err := ParseIdentity(identity)
	if err != nil {
		return fail(CodeInvalidIdentityHeader, PASSporT{}, err)
	}
	if params.Alg != AlgES256 {
		return fail(CodeInvalidIdentityHeader, PASSporT{}, fmt.Errorf("stir: Identity alg %q, want ES256", params.Alg))
	}
	// RFC 8224 §4 wants ppt on the header when the PASSporT has an
	// extension, but peers omit it; the PASSporT's own ppt decides.
	if params.Ppt != "" && params.Ppt != PptShaken {
		return fail(CodeInvalidIdentityHeader, PASSporT{}, fmt.Errorf("stir: Identity ppt %q, want shaken", params.Ppt))
	}
	hdr64, payload64, sig64, err := splitToken(token)
	if err != nil {
		return fail(CodeInvalidIdentityHeader, PASSporT{}, err)
	}
	p, err := decodeClaims(hdr64, payload64)
	if err != nil {
		return fail(CodeInvalidIdentityHeader, p, err)
	}
	if p.Header.X5U != params.Info {
		return fail(CodeInvalidIdentityHeader, p, fmt.Errorf("stir: x5u %q differs from info %q", p.Header.X5U, params.Info))
	}
	now := v.cfg.Now()
	iat := time.Unix(p.IAT, 0)
	if d := now.Sub(iat); d > v.cfg.MaxAge || d < -v.cfg.MaxAge {
		return fail(CodeStaleDate, p, fmt.Errorf("stir: iat %s is %s from now", iat.UTC().Format(time.RFC3339), d.Round(time.Second)))
	}
	if tn, ok := NormalizeTN(orig); !ok || tn != p.Orig {
		return fail(CodeInvalidIdentityHeader, p, fmt.Errorf("stir: orig %q does not match calling number %q", p.Orig, orig))
	}
	if tn, ok := NormalizeTN(dest); !ok || !contains(p.Dest, tn) {
		return fail(CodeInvalidIdentityHeader, p, fmt.Errorf("stir: dest %q does not include called number %q", p.Dest, dest))
	}
	if err := v.checkURL(params.Info); err != nil {
		return fail(CodeBadIdentityInfo, p, err)
	}
	sig, err := b64.DecodeString(sig64)
	if err != nil || len(sig) != 64 {
		return fail(CodeInvalidIdentityHeader, p, errors.New("stir: signature is not 64 bytes of base64url"))
	}

	e := v.certificate(ctx, params.Info)
	if e.code != CodeValid {
		return fail(e.code, p, e.err)
	}
	if now.Before(e.validFrom) || now.After(e.validUntil) {
		// The chain verified at fetch time has lapsed (or the clock went
		// back); another chain through Roots may still be good.
		if _, err := v.verifyChain(e.leaf, e.intermediates, now); err != nil {
			return fail(CodeUnsupportedCredential, p, err)
		}
	}
	if len(e.tnAuth.SPCs) == 0 && !e.tnAuth.Covers(p.Orig) {
		return fail(CodeUnsupportedCredential, p, fmt.Errorf("stir: certificate's TNAuthList does not cover %s", p.Orig))
	}
	if !verifyES256(e.pub, token[:len(hdr64)+1+len(payload64)], sig) {
		return fail(CodeInvalidIdentityHeader, p, errors.New("stir: signature does not verify"))
	}
	r := Result{Code: CodeValid, PASSporT: p, Verstat: VerstatPassed}
	if len(e.tnAuth.SPCs) > 0 {
		r.SPC = e.tnAuth.SPCs[0]
	}
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkURL accepts the x5u URLs the verifier will fetch.
func (v *Verifier) checkURL(x5u string) error {
	u, err := url.Parse(x5u)
	if err != nil {
		return fmt.Errorf("stir: x5u: %w", err)
	}
	if u.Host == "" {
		return fmt.Errorf("stir: x5u %q: no host", x5u)
	}
	if u.Scheme == "https" || (v.cfg.AllowHTTP && u.Scheme == "http") {
		return nil
	}
	return fmt.Errorf("stir: x5u %q: scheme %q not allowed (https required)", x5u, u.Scheme)
}

// Cached reports whether Verify can finish without fetching a certificate:
// the certificate for the header's x5u (or a recent failure to get it) is
// cached, or the header is unusable before any fetch. A caller can verify
// inline when it is true and hand the work to a bounded pool otherwise.
func (v *Verifier) Cached(identity string) bool {
	_, params, err := ParseIdentity(identity)
	if err != nil {
		return true
	}
	now := v.cfg.Now()
	v.mu.Lock()
	hit := v.lookup(params.Info, now) != nil
	v.mu.Unlock()
	return hit || v.checkURL(params.Info) != nil
}

// lookup returns the live cache entry for x5u; v.mu is held.
func (v *Verifier) lookup(x5u string, now time.Time) *certEntry {
	el, ok := v.entries[x5u]
	if !ok {
		return nil
	}
	e := el.Value.(*certEntry)
	if !now.Before(e.expires) {
		v.lru.Remove(el)
		delete(v.entries, x5u)
		return nil
	}
	v.lru.MoveToFront(el)
	return e
}

// store puts e in the cache, dropping the least recently used entry when
// full; v.mu is held.
func (v *Verifier) store(e *certEntry) {
	if el, ok := v.entries[e.x5u]; ok {
		el.Value = e
		v.lru.MoveToFront(el)
		return
	}
	v.entries[e.x5u] = v.lru.PushFront(e)
	for v.lru.Len() > v.cfg.CacheSize {
		old := v.lru.Back()
		v.lru.Remove(old)
		delete(v.entries, old.Value.(*certEntry).x5u)
	}
}

// certificate returns the cache entry for x5u, fetching it if needed.
// Concurrent callers for the same x5u share one fetch. The fetch runs on
// its own goroutine bounded by cfg.Timeout, so a caller whose ctx ends
// can leave without cancelling it for the others.
func (v *Verifier) certificate(ctx context.Context, x5u string) *certEntry {
	v.mu.Lock()
	if e := v.lookup(x5u, v.cfg.Now()); e != nil {
		v.stats.Hits++
		v.mu.Unlock()
		return e
	}
	call, ok := v.inflight[x5u]
	if ok {
		v.stats.Coalesced++
	} else {
		select {
		case v.fetchSem <- struct{}{}:
		default:
			v.stats.Refused++
			v.mu.Unlock()
			return &certEntry{code: CodeBadIdentityInfo, err: errors.New("stir: too many certificate fetches in flight")}
		}
		v.stats.Fetches++
		call = &fetchCall{done: make(chan struct{})}
		v.inflight[x5u] = call
		go v.fetch(x5u, call)
	}
	v.mu.Unlock()
	select {
	case <-call.done:
		return call.entry
	case <-ctx.Done():
		return &certEntry{code: CodeBadIdentityInfo, err: fmt.Errorf("stir: waiting for %s: %w", x5u, ctx.Err())}
	}
}

func (v *Verifier) fetch(x5u string, call *fetchCall) {
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.Timeout)
	e, maxAge := v.load(ctx, x5u)
	cancel()
	// The slot is free before anyone hears the result: a caller that
	// verifies again at once must not find it still taken.
	<-v.fetchSem
	e.x5u = x5u
	now := v.cfg.Now()
	if e.code != CodeValid {
		e.expires = now.Add(v.cfg.NegativeTTL)
	} else {
		ttl := v.cfg.CacheTTL
		if maxAge >= 0 {
			ttl = min(max(maxAge, v.cfg.NegativeTTL), ttl)
		}
		e.expires = now.Add(ttl)
	}
	v.mu.Lock()
	if e.code != CodeValid {
		v.stats.Failures++
	}
	v.store(e)
	delete(v.inflight, x5u)
	v.mu.Unlock()
	call.entry = e
	close(call.done)
}

// load fetches and checks the certificate chain at x5u. maxAge is the
// response's Cache-Control max-age, or -1.
func (v *Verifier) load(ctx context.Context, x5u string) (e *certEntry, maxAge time.Duration) {
	maxAge = -1
	bad := func(err error) (*certEntry, time.Duration) {
		return &certEntry{code: CodeBadIdentityInfo, err: err}, maxAge
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, x5u, nil)
	if err != nil {
		return bad(fmt.Errorf("stir: x5u %s: %w", x5u, err))
	}
	req.Header.Set("Accept", "application/pem-certificate-chain, application/x-pem-file, application/pkix-cert;q=0.5")
	resp, err := v.cfg.Client.Do(req)
	if err != nil {
		return bad(fmt.Errorf("stir: fetch x5u: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return bad(fmt.Errorf("stir: fetch x5u %s: HTTP %s", x5u, resp.Status))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(v.cfg.MaxCertSize)+1))
	if err != nil {
		return bad(fmt.Errorf("stir: fetch x5u %s: %w", x5u, err))
	}
	if len(body) > v.cfg.MaxCertSize {
		return bad(fmt.Errorf("stir: x5u %s: larger than %d bytes", x5u, v.cfg.MaxCertSize))
	}
	maxAge = cacheMaxAge(resp.Header.Get("Cache-Control"))
	certs, err := parseChain(body)
	if err != nil {
		return bad(fmt.Errorf("stir: x5u %s: %w", x5u, err))
	}
	return v.accept(certs, v.cfg.Now()), maxAge
}

// parseChain reads a PEM chain, leaf first (RFC 8224 §7.3, ATIS-1000074
// §5.3.1), or a single DER certificate.
func parseChain(body []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := body
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	c, err := x509.ParseCertificate(body)
	if err != nil {
		return nil, errors.New("no certificate (neither PEM nor DER)")
	}
	return []*x509.Certificate{c}, nil
}

// accept checks a fetched chain: an ES256 key, a TNAuthList on the leaf
// (RFC 8226, ATIS-1000080) and a path to Roots at now.
func (v *Verifier) accept(certs []*x509.Certificate, now time.Time) *certEntry {
	unsupported := func(err error) *certEntry {
		return &certEntry{code: CodeUnsupportedCredential, err: err}
	}
	leaf := certs[0]
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return unsupported(errors.New("stir: certificate key is not EC P-256"))
	}
	var tnAuth TNAuthList
	found := false
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(OIDTNAuthList) {
			l, err := ParseTNAuthList(ext.Value)
			if err != nil {
				return unsupported(err)
			}
			tnAuth, found = l, true
			break
		}
	}
	if !found {
		return unsupported(errors.New("stir: certificate has no TNAuthList"))
	}
	// We understand TNAuthList; x509 must not refuse it for being critical.
	// The leaf is a fresh parse, ours to change.
	kept := leaf.UnhandledCriticalExtensions[:0]
	for _, oid := range leaf.UnhandledCriticalExtensions {
		if !oid.Equal(OIDTNAuthList) {
			kept = append(kept, oid)
		}
	}
	leaf.UnhandledCriticalExtensions = kept
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chain, err := v.verifyChain(leaf, inter, now)
	if err != nil {
		return unsupported(err)
	}
	e := &certEntry{leaf: leaf, pub: pub, intermediates: inter, tnAuth: tnAuth}
	e.validFrom, e.validUntil = chain[0].NotBefore, chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotBefore.After(e.validFrom) {
			e.validFrom = c.NotBefore
		}
		if c.NotAfter.Before(e.validUntil) {
			e.validUntil = c.NotAfter
		}
	}
	return e
}

func (v *Verifier) verifyChain(leaf *x509.Certificate, inter *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.cfg.Roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("stir: certificate: %w", err)
	}
	return chains[0], nil
}

// cacheMaxAge returns the max-age of a Cache-Control header, 0 for
// no-store or no-cache, or -1 when it says nothing about age.
func cacheMaxAge(h string) time.Duration {
	age := time.Duration(-1)
	for _, d := range strings.Split(h, ",") {
		d = strings.TrimSpace(d)
		name, val, _ := strings.Cut(d, "=")
		switch strings.ToLower(name) {
		case "no-store", "no-cache":
			return 0
		case "max-age":
			n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
			if err == nil && n >= 0 {
				age = time.Duration(min(n, int64(365*24*3600))) * time.Second
			}
		}
	}
	return age
}
