package ua

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// ErrTimeout is a request that got no final response (RFC 3261 §17.1.1.2
// Timer B, §17.1.2.2 Timer F): the UAC treats it as 408.
var ErrTimeout = errors.New("ua: request timed out (408)")

// ErrTransport is a request that could not be sent: the UAC treats it as
// 503 (RFC 3261 §8.1.3.1).
var ErrTransport = errors.New("ua: transport error (503)")

func (u *UA) trace(req *sip.Request, res *sip.Response) {
	if f := u.cfg.OnResponse; f != nil {
		f(req, res)
	}
}

type result struct {
	res *sip.Response
	err error
}

// transact runs one non-INVITE client transaction and waits for its final
// response.
func (u *UA) transact(ctx context.Context, req *sip.Request, s *sender) (*sip.Response, error) {
	final := make(chan result, 1)
	tx, err := u.layer.Request(req, s, func(res *sip.Response, err error) {
		if err != nil {
			deliver(final, result{err: txError(err)})
			return
		}
		u.trace(req, res)
		if res.StatusCode >= 200 {
			deliver(final, result{res: res})
		}
	})
	if err != nil && tx == nil {
		return nil, fmt.Errorf("ua: %s: %w", req.Method, err)
	}
	sendErr := err // a failed first send: the handler has ErrTransport
	select {
	case r := <-final:
		if sendErr != nil && errors.Is(r.err, ErrTransport) {
			r.err = fmt.Errorf("%w: %v", ErrTransport, sendErr)
		}
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-u.ctx.Done():
		return nil, ErrClosed
	}
}

func txError(err error) error {
	switch {
	case errors.Is(err, transaction.ErrTimeout):
		return ErrTimeout
	case errors.Is(err, transaction.ErrTransport):
		return ErrTransport
	}
	return err
}

// authCache remembers the last challenge answered for a series of
// requests (a registration), so that refreshes carry credentials at once
// with the next nonce count (RFC 7616 §3.4, RFC 3261 §22.3).
type authCache struct {
	mu     sync.Mutex
	header string // Authorization or Proxy-Authorization
	ch     *digest.Challenge
	nc     uint32
}

// algorithmRank orders algorithms by strength: a UAC offered several
// challenges answers the strongest it supports (RFC 8760 §2.4).
func algorithmRank(a digest.Algorithm) int {
	switch a {
	case digest.SHA512_256, digest.SHA512_256Sess:
		return 3
	case digest.SHA256, digest.SHA256Sess:
		return 2
	}
	return 1
}

// pickChallenge returns the strongest usable Digest challenge of a 401 or
// 407 and the header its answer goes in.
func pickChallenge(res *sip.Response) (*digest.Challenge, string) {
	name, answer := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		name, answer = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var best *digest.Challenge
	rank := 0
	for _, v := range res.All(name) {
		ch, err := digest.ParseChallenge(v)
		if err != nil || !strings.EqualFold(ch.Scheme, "Digest") {
			continue
		}
		alg, err := digest.ParseAlgorithm(ch.Algorithm)
		if err != nil {
			continue
		}
		if r := algorithmRank(alg); r > rank {
			best, rank = ch, r
		}
	}
	return best, answer
}

// credentials answers ch for req, counting the nonce's uses in cache.
func (u *UA) credentials(req *sip.Request, ch *digest.Challenge, nc uint32) (string, error) {
	user := u.cfg.AuthUser
	if user == "" {
		user = sip.Unescape(u.aor.User)
	}
	cr, err := ch.Authorize(digest.Answer{Method: req.Method, URI: req.URI.String(), Username: user,
		Password: u.cfg.Password, Body: req.Body, NC: nc, CNonce: randHex(8)})
	if err != nil {
		return "", err
	}
	return cr.String(), nil
}

// do sends the request build returns, answering up to two digest
// challenges (RFC 3261 §22.2, §22.3): each retry is built anew, so it has
// a new branch and the next CSeq. After a transport error, a timeout or a
// 503, build is asked for the request to the next target with the reason
// (RFC 3263 §4.3); when it has none (errNoHop, or any builder that
// ignores the reason and fails) the failure stands. Responses >= 300
// return a *StatusError together with the response.
func (u *UA) do(ctx context.Context, cache *authCache, build func(failed resolve.Reason) (*sip.Request, *sender, error)) (*sip.Response, error) {
	var lastNonce string
	var failed resolve.Reason
	var lastRes *sip.Response
	var lastErr error
	for attempt := 0; ; attempt++ {
		req, s, err := build(failed)
		if failed != 0 && errors.Is(err, errNoHop) {
			return lastRes, lastErr
		}
		if err != nil {
			return nil, err
		}
		failed = 0
		if cache != nil {
			cache.mu.Lock()
			if cache.ch != nil {
				cache.nc++
				if v, err := u.credentials(req, cache.ch, cache.nc); err == nil {
					req.Set(cache.header, v)
				}
			}
			cache.mu.Unlock()
		}
		res, err := u.transact(ctx, req, s)
		if why := failure(res, err); why != 0 && ctx.Err() == nil {
			failed, lastRes, lastErr = why, res, err
			if res != nil {
				lastErr = statusError(res)
			}
			attempt-- // not a digest round
			continue
		}
		if err != nil {
			return nil, err
		}
		if (res.StatusCode == 401 || res.StatusCode == 407) && attempt < 2 && u.cfg.Password != "" {
			ch, header := pickChallenge(res)
			if ch != nil && (ch.Nonce != lastNonce || ch.Stale) {
				lastNonce = ch.Nonce
				if cache == nil {
					cache = &authCache{}
				}
				cache.mu.Lock()
				cache.ch, cache.header, cache.nc = ch, header, 0
				cache.mu.Unlock()
				continue
			}
		}
		if res.StatusCode >= 300 {
			return res, statusError(res)
		}
		return res, nil
	}
}

// newRequest builds a request outside any dialog (RFC 3261 §8.1.1): From
// with a new tag, To the target, a new Call-ID, CSeq 1, Max-Forwards 70,
// and a preloaded Route to the outbound proxy when one is configured and
// the target is not the proxy itself.
func (u *UA) newRequest(method string, target sip.URI) *sip.Request {
	req := &sip.Request{Method: method, URI: target, Version: "SIP/2.0"}
	req.From = u.from
	req.From.Params = sip.Params(";tag=" + sip.NewTag())
	req.To = sip.Address{URI: target}
	req.To.URI.Params = ""
	req.To.URI.Headers = ""
	req.CallID = randHex(10) + "@" + strings.Trim(u.contact.URI.Host, "[]")
	req.CSeq = sip.CSeq{Seq: 1, Method: method}
	req.MaxForwards = 70
	if u.server != nil && !sameHostPort(u.server, &target) {
		r := *u.server
		r.Params = r.Params.Set("lr", "")
		req.Route = []sip.Address{{URI: r}}
	}
	return req
}

func sameHostPort(a, b *sip.URI) bool {
	pa, pb := a.Port, b.Port
	if pa == 0 {
		pa = 5060
	}
	if pb == 0 {
		pb = 5060
	}
	return strings.EqualFold(a.Hostname(), b.Hostname()) && pa == pb
}

// outside returns a builder for a request outside a dialog that is
// re-sent with the next CSeq on each call.
func (u *UA) outside(ctx context.Context, proto *sip.Request) func(resolve.Reason) (*sip.Request, *sender, error) {
	seq := proto.CSeq.Seq - 1
	var hs *hops
	return func(failed resolve.Reason) (*sip.Request, *sender, error) {
		seq++
		req := *proto
		req.Fields = append([]sip.Field(nil), proto.Fields...)
		req.CSeq.Seq = seq
		h, err := u.nextHop(ctx, &hs, &req, failed)
		if err != nil {
			return nil, nil, err
		}
		u.stamp(&req, h.proto)
		return &req, u.newSender(h, u.lookupConn(h), nil), nil
	}
}

func (u *UA) lookupConn(h hop) *transport.Conn {
	if h.proto == transport.UDP {
		return nil
	}
	return u.tm.Lookup(h.proto, h.remote)
}

// Options sends OPTIONS to target (RFC 3261 §11) and returns the final
// response; a response >= 300 comes with a *StatusError.
func (u *UA) Options(ctx context.Context, target string) (*sip.Response, error) {
	uri, err := parseTarget(target, u.aor.Host)
	if err != nil {
		return nil, fmt.Errorf("ua: target %q: %w", target, err)
	}
	req := u.newRequest(sip.OPTIONS, uri)
	req.Add("Accept", ContentTypeSDP)
	return u.do(ctx, nil, u.outside(ctx, req))
}

// Message sends a MESSAGE (RFC 3428) with the given body to target.
func (u *UA) Message(ctx context.Context, target, contentType string, body []byte) (*sip.Response, error) {
	uri, err := parseTarget(target, u.aor.Host)
	if err != nil {
		return nil, fmt.Errorf("ua: target %q: %w", target, err)
	}
	if contentType == "" {
		contentType = "text/plain"
	}
	req := u.newRequest(sip.MESSAGE, uri)
	req.ContentType = contentType
	req.Body = body
	return u.do(ctx, nil, u.outside(ctx, req))
}

// registration is the UA's binding at its registrar (RFC 3261 §10.2):
// one Call-ID and From tag, and CSeq growing across refreshes.
type registration struct {
	u      *UA
	callID string
	tag    string
	auth   authCache

	mu      sync.Mutex
	seq     uint32
	expires time.Duration // granted
	timer   transaction.Timer
	halted  bool     // Unregister or Close stopped the refreshes
	cur     *refresh // the refresher of the current Register
}

// refresh is one refresher goroutine's channels. Register after
// Unregister starts a new one even while the old one is still finishing
// a refresh: the old one only ever sees its own stop.
type refresh struct {
	kick    chan struct{}
	stop    chan struct{}
	started bool
}

func newRefresh() *refresh {
	return &refresh{kick: make(chan struct{}, 1), stop: make(chan struct{})}
}

// Register registers the UA's Contact for its address of record with the
// registrar (Config.Server, or the AOR's host), answering digest
// challenges, and keeps the binding fresh: it is refreshed when half of
// the granted expiry has passed, until Unregister or Close. It returns
// the final response; a response >= 300 comes with a *StatusError.
func (u *UA) Register(ctx context.Context) (*sip.Response, error) {
	r, err := u.registration()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.halted {
		r.halted = false
		r.cur = newRefresh()
	}
	r.mu.Unlock()
	res, err := r.send(ctx, u.cfg.Expires)
	if err != nil {
		return res, err
	}
	u.mu.Lock() // wg.Add only while not closed
	if !u.closed {
		r.mu.Lock()
		if f := r.cur; !f.started && !r.halted {
			f.started = true
			u.wg.Add(1)
			go r.loop(f)
		}
		r.mu.Unlock()
	}
	u.mu.Unlock()
	return res, nil
}

// Unregister removes the binding (Expires: 0, RFC 3261 §10.2.2) and stops
// the refresh.
func (u *UA) Unregister(ctx context.Context) (*sip.Response, error) {
	r, err := u.registration()
	if err != nil {
		return nil, err
	}
	r.stop()
	return r.send(ctx, 0)
}

// Registered returns the expiry the registrar granted at the last
// successful registration, zero when not registered.
func (u *UA) Registered() time.Duration {
	u.mu.Lock()
	r := u.reg
	u.mu.Unlock()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expires
}

func (u *UA) registration() (*registration, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, ErrClosed
	}
	if u.reg == nil {
		u.reg = &registration{u: u, callID: randHex(10) + "@" + strings.Trim(u.contact.URI.Host, "[]"),
			tag: sip.NewTag(), cur: newRefresh()}
	}
	return u.reg, nil
}

// send sends one REGISTER asking for expires and schedules the refresh.
func (r *registration) send(ctx context.Context, expires time.Duration) (*sip.Response, error) {
	u := r.u
	registrar := sip.URI{Scheme: u.aor.Scheme, Host: u.aor.Host, Port: u.aor.Port}
	secs := strconv.Itoa(int(expires / time.Second))
	var hs *hops
	build := func(failed resolve.Reason) (*sip.Request, *sender, error) {
		r.mu.Lock()
		r.seq++
		seq := r.seq
		r.mu.Unlock()
		req := &sip.Request{Method: sip.REGISTER, URI: registrar, Version: "SIP/2.0"}
		req.From = u.from
		req.From.Params = sip.Params(";tag=" + r.tag)
		req.To = sip.Address{URI: u.from.URI, Display: u.from.Display}
		req.CallID = r.callID
		req.CSeq = sip.CSeq{Seq: seq, Method: sip.REGISTER}
		req.MaxForwards = 70
		c := u.contact
		c.Params = c.Params.Set("expires", secs)
		if u.cfg.Q != "" && expires > 0 {
			c.Params = c.Params.Set("q", u.cfg.Q)
		}
		req.Contact = []sip.Address{c}
		req.Add("Expires", secs)
		req.Add("Allow", allowed)
		req.Add("Supported", u.supported())
		h, err := u.nextHop(ctx, &hs, req, failed)
		if err != nil {
			return nil, nil, err
		}
		u.stamp(req, h.proto)
		return req, u.newSender(h, u.lookupConn(h), nil), nil
	}
	res, err := u.do(ctx, &r.auth, build)
	if err != nil {
		if expires > 0 {
			r.schedule(retryAfter(r.expiresOr(expires)))
		}
		return res, err
	}
	granted := grantedExpiry(res, u.contact, expires)
	r.mu.Lock()
	r.expires = granted
	r.mu.Unlock()
	if expires > 0 && granted > 0 {
		r.schedule(granted / 2)
	}
	u.log.Info("registered", "aor", u.aor.String(), "expires", granted)
	return res, nil
}

func (r *registration) expiresOr(d time.Duration) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.expires > 0 {
		return r.expires
	}
	return d
}

func retryAfter(expires time.Duration) time.Duration {
	return max(min(30*time.Second, expires/2), time.Second)
}

// maxExpiry is the longest expiry read from a registrar: 2**32-1 seconds,
// the largest delta-seconds (RFC 3261 §25.1 bounds Expires by it).
const maxExpiry = (1<<32 - 1) * time.Second

// grantedExpiry reads the expiry the registrar granted our Contact
// (RFC 3261 §10.2.4): its expires parameter, else the Expires header,
// else what was asked for.
func grantedExpiry(res *sip.Response, contact sip.Address, asked time.Duration) time.Duration {
	for _, c := range res.Contact {
		if c.URI.Equal(&contact.URI) {
			if v, ok := c.Params.Get("expires"); ok {
				if d, ok := parseExpiry(v); ok {
					return d
				}
			}
		}
	}
	if v := res.Get("Expires"); v != "" {
		if d, ok := parseExpiry(v); ok {
			return d
		}
	}
	return asked
}

// parseExpiry reads delta-seconds, clamped to maxExpiry so that the
// Duration cannot overflow.
func parseExpiry(v string) (time.Duration, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return maxExpiry, true
	case err != nil:
		return 0, false
	case n > uint64(maxExpiry/time.Second):
		return maxExpiry, true
	}
	return time.Duration(n) * time.Second, true
}

func (r *registration) schedule(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.halted {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	kick := r.cur.kick
	r.timer = r.u.cfg.Clock.AfterFunc(d, func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	})
}

// loop refreshes the registration each time f is kicked, until f stops.
func (r *registration) loop(f *refresh) {
	defer r.u.wg.Done()
	for {
		select {
		case <-r.u.ctx.Done():
			return
		case <-f.stop:
			return
		case <-f.kick:
		}
		if _, err := r.send(r.u.ctx, r.u.cfg.Expires); err != nil {
			r.u.log.Warn("registration refresh failed", "aor", r.u.aor.String(), "err", err)
		}
	}
}

// stop ends the refreshes.
func (r *registration) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.halted {
		return
	}
	r.halted = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	close(r.cur.stop)
}
