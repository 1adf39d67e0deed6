// Package publish is hlas's event state compositor (ESC) for PUBLISH
// (RFC 3903): it keeps the event state that event publication agents
// (phones, softphones) publish for a resource — one publication per
// device, each under an entity-tag (SIP-ETag) — and answers what a
// notifier needs to compose the resource's state: the unexpired
// publications of a resource, oldest first.
//
// It is pure state: the SIP layer parses the PUBLISH into a Request and
// turns the Result into a response (SIP-ETag, Expires, Min-Expires,
// Accept, Warning, Retry-After headers). Bodies are checked by a Codec
// per event package and never stored when invalid.
//
// Durability: with a store, a successful Publish returns only after the
// change is committed (RFC 3903 §6: processing is atomic; a failure of the
// back end fails the PUBLISH and changes nothing), and New loads what was
// stored, so a restart keeps published state.
//
// Expiry runs on the caller's clock: State has no goroutine or timer of
// its own. The caller calls Sweep periodically (once a second is plenty;
// NextExpiry says when the next publication lapses) and is told through
// Env.OnExpire which resources changed.
package publish

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// Defaults of Config.
const (
	DefaultMinExpires      = 60 * time.Second
	DefaultMaxExpires      = 3600 * time.Second
	DefaultDefaultExpires  = 3600 * time.Second
	DefaultMaxBody         = 64 << 10
	DefaultMaxPublications = 200_000
	DefaultMaxPerResource  = 16
	DefaultMaxBytes        = 256 << 20
	DefaultCommitWindow    = 4 * time.Millisecond
)

// storeTimeout bounds the store calls made without a caller's context
// (loading in New, purging in Sweep).
const storeTimeout = time.Minute

// maxCommitWindow bounds Config.CommitWindow: an answer later than a
// fraction of Timer E's 500 ms brings retransmissions.
const maxCommitWindow = 100 * time.Millisecond

// Publication is one device's published state for a resource.
type Publication = store.Publication

// Request is a PUBLISH as the compositor sees it, already authenticated and
// authorized for Resource by the caller.
type Request struct {
	// Event is the event package name ("presence", "dialog").
	Event string
	// Resource is the AOR published for, "user@domain".
	Resource string
	// IfMatch is the SIP-If-Match header value; "" for an initial
	// publication.
	IfMatch string
	// Expires is the Expires header value in seconds; -1 when the request
	// had none.
	Expires int
	// ContentType is the media type of Body (parameters are ignored);
	// "" when there is no body.
	ContentType string
	// Body is the published document.
	Body []byte
}

// Result is the answer to a Request.
type Result struct {
	// Code is the response status: 200, 400 (with Warning), 412 (unknown
	// or lapsed ETag), 413 (body above Config.MaxBody), 415 (with Accept),
	// 423 (with MinExpires), 489 (no codec for the event package: the
	// caller adds Allow-Events), 500 (store failure), 503 (a limit of
	// Config; with RetryAfter).
	Code int
	// ETag is the SIP-ETag of a 200: new on every successful publication,
	// removals included (RFC 3903 §6 step 6).
	ETag string
	// Expires is the Expires of a 200, in seconds; 0 for a removal.
	Expires int
	// MinExpires is the Min-Expires of a 423, in seconds.
	MinExpires int
	// Accept lists the body types of the event package, for a 415.
	Accept []string
	// Warning explains a 400 (the text for a Warning header).
	Warning string
	// RetryAfter is the Retry-After of a 503, in seconds.
	RetryAfter int
	// Changed reports that the composed state of Resource changed (an
	// initial publication, a modification with a different body, a
	// removal, or a publication found gone from the store): notifiers
	// should send NOTIFYs. A refresh changes nothing.
	Changed bool
}

// Codec checks the bodies of one event package.
type Codec interface {
	// ContentTypes are the media types the package accepts, such as
	// application/pidf+xml.
	ContentTypes() []string
	// Validate parses a body; an error makes the PUBLISH a 400 with the
	// error as its Warning, and nothing is stored.
	Validate(contentType string, body []byte) error
}

// Parser is implemented by a Codec whose parsed documents are worth
// keeping: Publish calls Parse instead of Validate and keeps the result
// beside the body, so that composing the resource's state for its
// watchers (Documents) does not parse the body again.
type Parser interface {
	// Parse is Validate that also returns the parsed document.
	Parse(contentType string, body []byte) (any, error)
}

// Config is the compositor's configuration; the YAML file maps onto it.
// Zero fields take the defaults named.
type Config struct {
	// MinExpires: a publication asked for less (but not 0) gets 423
	// Interval Too Brief with Min-Expires (RFC 3903 §6 step 4). Default 60s.
	MinExpires time.Duration `yaml:"min_expires"`
	// MaxExpires caps the expiry granted (RFC 3903 §6 step 4: the ESC may
	// choose less than asked). Default 3600s.
	MaxExpires time.Duration `yaml:"max_expires"`
	// DefaultExpires applies to a PUBLISH without Expires. Default 3600s
	// (at most MaxExpires).
	DefaultExpires time.Duration `yaml:"default_expires"`
	// MaxBody bounds a published body in bytes; larger ones get 413.
	// Default 64 KiB.
	MaxBody int `yaml:"max_body"`
	// MaxPublications bounds the publications held, MaxPerResource those
	// of one resource of one event package, and MaxBytes the body bytes
	// held in all. A new publication beyond one of them gets 503 with
	// Retry-After: the condition clears by itself as publications lapse,
	// and a device that lost its ETag (a restart) gets in once its stale
	// publication expires, which 403 would forbid for good. Defaults
	// 200000, 16 and 256 MiB.
	MaxPublications int `yaml:"max_publications"`
	MaxPerResource  int `yaml:"max_per_resource"`
	MaxBytes        int `yaml:"max_bytes"`
	// CommitWindow is how long a PUBLISH's store write may wait for the
	// writes of other PUBLISHes to share its transaction (group commit):
	// a commit costs more than the rows in it, and at 1 000 PUBLISH/s
	// the commits seldom overlap by themselves. The 200 still leaves only
	// after its own change is committed, so this is latency added to
	// answers, under load only (see committer for when a write waits).
	// Default 4ms (at 1 000 PUBLISH/s on the embedded database: about
	// four writes a commit and a third less CPU per PUBLISH than without
	// waiting; 2ms gathers two, 8ms five for a little more saving at
	// twice the latency); at most 100ms; negative: no waiting (a write
	// still shares the commit of the writes queued while another
	// committed).
	CommitWindow time.Duration `yaml:"commit_window"`
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MinExpires == 0 {
		c.MinExpires = DefaultMinExpires
	}
	if c.MaxExpires == 0 {
		c.MaxExpires = DefaultMaxExpires
	}
	if c.DefaultExpires == 0 {
		c.DefaultExpires = min(DefaultDefaultExpires, c.MaxExpires)
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxPublications == 0 {
		c.MaxPublications = DefaultMaxPublications
	}
	if c.MaxPerResource == 0 {
		c.MaxPerResource = DefaultMaxPerResource
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.CommitWindow == 0 {
		c.CommitWindow = DefaultCommitWindow
	}
	return c
}

// Validate checks the configuration and names the offending field.
func (c Config) Validate() error {
	if c.MinExpires < 0 || c.MaxExpires < 0 || c.DefaultExpires < 0 || c.MaxBody < 0 ||
		c.MaxPublications < 0 || c.MaxPerResource < 0 || c.MaxBytes < 0 {
		return errors.New("publish: min_expires, max_expires, default_expires, max_body, max_publications, max_per_resource and max_bytes must not be negative")
	}
	c = c.withDefaults()
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"min_expires", c.MinExpires}, {"max_expires", c.MaxExpires}, {"default_expires", c.DefaultExpires}} {
		if d.v%time.Second != 0 {
			return fmt.Errorf("publish %s %v: want whole seconds (Expires is in seconds)", d.name, d.v)
		}
	}
	switch {
	case c.MinExpires > c.MaxExpires:
		return fmt.Errorf("publish min_expires %v is above max_expires %v", c.MinExpires, c.MaxExpires)
	case c.DefaultExpires < c.MinExpires || c.DefaultExpires > c.MaxExpires:
		return fmt.Errorf("publish default_expires %v is outside min_expires..max_expires (%v..%v)", c.DefaultExpires, c.MinExpires, c.MaxExpires)
	case c.MaxBody > c.MaxBytes:
		return fmt.Errorf("publish max_body %d is above max_bytes %d", c.MaxBody, c.MaxBytes)
	case c.CommitWindow > maxCommitWindow:
		return fmt.Errorf("publish commit_window %v is above %v", c.CommitWindow, maxCommitWindow)
	}
	return nil
}

// Env is what a State needs from the server that runs it.
type Env struct {
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Store is where publications are written through before a PUBLISH
	// is answered; nil keeps them in memory only.
	Store store.Publications
	// OnExpire is called by Sweep, outside any lock, once per resource
	// that lost a publication to expiry: its composed state changed.
	OnExpire func(event, resource string)
	// Logger gets records with feature=publish. Default slog.Default().
	Logger *slog.Logger
	// Callers is the most goroutines that call Publish at once (the
	// server's workers), 0 when unknown: a write waiting for others to
	// share its commit stops waiting once that many are queued.
	Callers int
}

// State holds the published event state. Its methods are safe for
// concurrent use; the lock is never held across a store call or a Codec.
type State struct {
	cfg    Config
	env    Env
	codecs map[string]Codec
	log    *slog.Logger
	commit *committer // nil without a store

	mu    sync.Mutex
	res   map[resKey]*resource
	heap  expiryHeap
	count int // publications held
	// reserved counts initial publications between their checks and
	// their commit, so that concurrent ones cannot overrun the limits.
	reserved int
	bytes    int // body bytes held and reserved
}

type resKey struct{ event, resource string }

// resource is the publications of one resource for one event package, in
// the order Current returns them.
type resource struct {
	pubs     []*entry
	reserved int
}

// entry is one publication.
type entry struct {
	p       Publication
	key     resKey
	heapIdx int // -1 when not in the heap (lapsed while busy)
	// busy marks a refresh, modification or removal between its checks
	// and its commit: a second request naming the same ETag gets 412
	// (only one of two can succeed, RFC 3903 §6 step 6), and Sweep leaves
	// the entry to the request that will commit or give up.
	busy bool
	// doc is what the codec's Parse made of p.Body; nil when the codec
	// has none, or for a publication loaded from the store until
	// Documents first parses it.
	doc any
}

// New checks cfg and returns a State holding the unexpired publications of
// env.Store (those of event packages without a codec are left in the
// store, unused, until they lapse).
func New(cfg Config, env Env, codecs map[string]Codec) (*State, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.Callers < 0 {
		return nil, errors.New("publish: Env.Callers must not be negative")
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	s := &State{
		cfg:    cfg.withDefaults(),
		env:    env,
		codecs: make(map[string]Codec, len(codecs)),
		log:    env.Logger.With("feature", "publish"),
		res:    make(map[resKey]*resource),
	}
	for name, c := range codecs {
		if c == nil {
			return nil, fmt.Errorf("publish: event package %q has no codec", name)
		}
		s.codecs[name] = c
	}
	if env.Store == nil {
		return s, nil
	}
	s.commit = newCommitter(env.Store, s.cfg.CommitWindow, env.Callers)
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	now := env.Now()
	if _, err := env.Store.PurgePublications(ctx, now); err != nil {
		return nil, fmt.Errorf("publish: purge lapsed publications: %w", err)
	}
	pubs, err := env.Store.Publications(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("publish: load publications: %w", err)
	}
	skipped := 0
	for _, p := range pubs {
		if _, ok := s.codecs[p.Event]; !ok {
			skipped++
			continue
		}
		k := resKey{p.Event, p.Resource}
		r := s.res[k]
		if s.count >= s.cfg.MaxPublications || s.bytes+len(p.Body) > s.cfg.MaxBytes ||
			(r != nil && len(r.pubs) >= s.cfg.MaxPerResource) {
			skipped++
			continue
		}
		if r == nil {
			r = &resource{}
			s.res[k] = r
		}
		e := &entry{p: p, key: k}
		r.insert(e)
		s.heap.push(e)
		s.count++
		s.bytes += len(p.Body)
	}
	if skipped > 0 {
		s.log.Warn("stored publications not loaded (no codec for their event package, or above a limit)", "skipped", skipped)
	}
	return s, nil
}

// Count returns the number of publications held, lapsed ones not yet swept
// included.
func (s *State) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Current returns copies of the unexpired publications of resource for
// event, oldest first (by Created, then ID): the order in which a
// composer lays out one tuple per device. Bodies are shared, read only.
func (s *State) Current(event, resource string) []Publication {
	now := s.env.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.res[resKey{event, resource}]
	if r == nil {
		return nil
	}
	var out []Publication
	for _, e := range r.pubs {
		if e.p.Expires.After(now) {
			out = append(out, e.p)
		}
	}
	return out
}

// Document is a current publication with what its codec's Parse made of
// its body.
type Document struct {
	Publication
	// Parsed is the parsed Body; nil when the event package's codec is
	// not a Parser, or Body no longer parses (stored by a release whose
	// parser was more lenient).
	Parsed any
}

// Documents is Current with each body parsed: parsed when it was
// published, or for a publication loaded from the store, on the first
// call that returns it. Parsed documents are shared, read only.
func (s *State) Documents(event, resource string) []Document {
	now := s.env.Now()
	var out []Document
	var ents []*entry
	unparsed := false
	s.mu.Lock()
	if r := s.res[resKey{event, resource}]; r != nil {
		for _, e := range r.pubs {
			if e.p.Expires.After(now) {
				out = append(out, Document{Publication: e.p, Parsed: e.doc})
				ents = append(ents, e)
				unparsed = unparsed || e.doc == nil
			}
		}
	}
	s.mu.Unlock()
	p, ok := s.codecs[event].(Parser)
	if !unparsed || !ok {
		return out
	}
	for i := range out {
		if out[i].Parsed != nil {
			continue
		}
		doc, err := p.Parse(out[i].ContentType, out[i].Body)
		if err != nil {
			continue
		}
		out[i].Parsed = doc
		s.mu.Lock()
		if e := ents[i]; e.doc == nil && e.p.ETag == out[i].ETag {
			e.doc = doc // the body is still the one parsed
		}
		s.mu.Unlock()
	}
	return out
}

// NextExpiry returns when the next publication lapses, for a caller that
// runs Sweep on a timer; false when none is held.
func (s *State) NextExpiry() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heap) == 0 {
		return time.Time{}, false
	}
	return s.heap[0].p.Expires, true
}

// Sweep removes the publications lapsed at now, purges lapsed rows from the
// store, and calls Env.OnExpire once per resource that changed. A
// publication with a PUBLISH in flight is left to that request.
func (s *State) Sweep(now time.Time) {
	var changed []resKey
	var seen map[resKey]bool
	var lapsed []Publication
	s.mu.Lock()
	for len(s.heap) > 0 && !s.heap[0].p.Expires.After(now) {
		e := s.heap.pop()
		if e.busy {
			continue // its request puts it back or removes it
		}
		lapsed = append(lapsed, e.p)
		s.removeLocked(s.res[e.key], e)
		if seen == nil {
			seen = make(map[resKey]bool)
		}
		if !seen[e.key] {
			seen[e.key] = true
			changed = append(changed, e.key)
		}
	}
	s.mu.Unlock()
	if len(changed) == 0 {
		return
	}
	if s.env.Store != nil {
		// The rows of exactly what left memory: a purge by time would
		// also take the row of a publication whose request is still
		// under way (busy above) and is about to enter memory, leaving
		// memory and store apart. A row that fails to go has lapsed
		// all the same: New purges it, and no reader returns it
		// meanwhile.
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		ws := make([]store.PublicationWrite, 0, min(len(lapsed), maxBatch))
		for len(lapsed) > 0 {
			n := min(len(lapsed), maxBatch)
			ws = ws[:0]
			for _, p := range lapsed[:n] {
				ws = append(ws, store.PublicationWrite{P: p, Delete: true})
			}
			lapsed = lapsed[n:]
			if err := s.env.Store.WritePublications(ctx, ws); err != nil {
				s.log.Warn("delete lapsed publications", "err", err)
			}
		}
		cancel()
	}
	if s.env.OnExpire == nil {
		return
	}
	for _, k := range changed {
		s.env.OnExpire(k.event, k.resource)
	}
}

// removeLocked drops e from r and the counts, and r from the map when it
// empties. The caller holds mu.
func (s *State) removeLocked(r *resource, e *entry) {
	if i := slices.Index(r.pubs, e); i >= 0 {
		r.pubs = slices.Delete(r.pubs, i, i+1) // clears the freed slot
	}
	if e.heapIdx >= 0 {
		s.heap.remove(e)
	}
	s.count--
	s.bytes -= len(e.p.Body)
	if len(r.pubs) == 0 && r.reserved == 0 {
		delete(s.res, e.key)
	}
}

// insert places e in creation order.
func (r *resource) insert(e *entry) {
	i := len(r.pubs)
	for i > 0 && older(e, r.pubs[i-1]) {
		i--
	}
	r.pubs = append(r.pubs, nil)
	copy(r.pubs[i+1:], r.pubs[i:])
	r.pubs[i] = e
}

func older(a, b *entry) bool {
	if !a.p.Created.Equal(b.p.Created) {
		return a.p.Created.Before(b.p.Created)
	}
	return a.p.ID < b.p.ID
}

// newTag returns n random bytes as base64url: an entity-tag or ID that
// cannot be guessed (RFC 3903 §8.3), made of token characters only.
func newTag(n int) string {
	var b [16]byte
	_, _ = rand.Read(b[:n]) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:n])
}

const (
	etagBytes = 12
	idBytes   = 9
)

// isToken reports whether t is one entity-tag, which RFC 3903's grammar
// makes a token (RFC 3261 §25.1).
func isToken(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// mediaType returns the type/subtype of a Content-Type value, lower case.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

func accepts(c Codec, mt string) bool {
	for _, t := range c.ContentTypes() {
		if strings.EqualFold(t, mt) {
			return true
		}
	}
	return false
}

// seconds returns d in whole seconds.
func seconds(d time.Duration) int { return int(d / time.Second) }

// Publish processes one PUBLISH (RFC 3903 §6). The checks run in the
// order of §6 — Event (489), SIP-If-Match (412), Expires (423), body
// (415, 400) — after the size check (413) that guards the rest. A 200
// leaves only once the change is committed to the store. While one
// PUBLISH naming an ETag is being committed, another naming the same ETag
// gets 412: at most one of them could succeed, since success replaces the
// ETag.
func (s *State) Publish(ctx context.Context, r Request) Result {
	codec, ok := s.codecs[r.Event]
	if !ok {
		return Result{Code: 489}
	}
	if len(r.Body) > s.cfg.MaxBody {
		return Result{Code: 413}
	}
	if r.Resource == "" {
		return Result{Code: 400, Warning: "no resource to publish for"}
	}
	if r.IfMatch != "" && !isToken(strings.TrimSpace(r.IfMatch)) {
		// §6 step 3: more than one entity-tag, or not a token.
		return Result{Code: 400, Warning: "SIP-If-Match must hold one entity-tag"}
	}
	ifMatch := strings.TrimSpace(r.IfMatch)
	hasBody := len(r.Body) > 0
	mt := mediaType(r.ContentType)

	// §6 step 4, decided now, reported after step 3.
	var expires int
	var tooBrief bool
	switch {
	case r.Expires == -1:
		expires = seconds(s.cfg.DefaultExpires)
	case r.Expires < 0:
		return Result{Code: 400, Warning: "bad Expires"}
	case r.Expires == 0:
	case r.Expires < seconds(s.cfg.MinExpires):
		tooBrief = true
	default:
		expires = min(r.Expires, seconds(s.cfg.MaxExpires))
	}

	etag := newTag(etagBytes)
	now := s.env.Now()
	k := resKey{r.Event, r.Resource}

	s.mu.Lock()
	res := s.res[k]
	var old *entry
	if ifMatch != "" {
		// §6 step 3: match against the entity-tags of this resource and
		// event package; a lapsed one no longer matches.
		if res != nil {
			for _, e := range res.pubs {
				if e.p.ETag == ifMatch {
					old = e
					break
				}
			}
		}
		if old == nil || old.busy || !old.p.Expires.After(now) {
			s.mu.Unlock()
			return Result{Code: 412}
		}
	}
	if tooBrief {
		s.mu.Unlock()
		return Result{Code: 423, MinExpires: seconds(s.cfg.MinExpires)}
	}
	// §6 step 5.
	if hasBody && (mt == "" || !accepts(codec, mt)) {
		s.mu.Unlock()
		return Result{Code: 415, Accept: codec.ContentTypes()}
	}
	if old == nil && !hasBody {
		s.mu.Unlock()
		return Result{Code: 400, Warning: "an initial publication needs a body"}
	}
	if old == nil && expires == 0 {
		// An initial publication removed at once: nothing is stored
		// (§6 step 5), but the body must still be valid.
		s.mu.Unlock()
		if err := codec.Validate(mt, r.Body); err != nil {
			return Result{Code: 400, Warning: err.Error()}
		}
		return Result{Code: 200, ETag: etag, Expires: 0}
	}
	for res != nil && res.hasETag(etag) {
		etag = newTag(etagBytes) // §6 step 6: unique within the resource
	}
	if old == nil {
		if code, retry := s.reserveLocked(res, len(r.Body), now); code != 0 {
			s.mu.Unlock()
			return Result{Code: code, RetryAfter: retry}
		}
		if res == nil {
			res = &resource{}
			s.res[k] = res
		}
		res.reserved++
	} else {
		if hasBody && len(r.Body) > len(old.p.Body) && s.bytes+len(r.Body)-len(old.p.Body) > s.cfg.MaxBytes {
			s.mu.Unlock()
			return Result{Code: 503, RetryAfter: s.retryAfterLocked(nil, now)}
		}
		old.busy = true
	}
	s.mu.Unlock()

	var doc any
	if hasBody {
		var err error
		if p, ok := codec.(Parser); ok && expires != 0 {
			doc, err = p.Parse(mt, r.Body)
		} else {
			err = codec.Validate(mt, r.Body)
		}
		if err != nil {
			s.release(k, old, len(r.Body))
			return Result{Code: 400, Warning: err.Error()}
		}
	}

	switch {
	case old == nil:
		return s.create(ctx, k, r, mt, etag, expires, now, doc)
	case expires == 0:
		return s.remove(ctx, old, etag)
	default:
		return s.update(ctx, old, r, mt, etag, expires, now, doc)
	}
}

// write commits one change to the store, if there is one.
func (s *State) write(ctx context.Context, w store.PublicationWrite) error {
	if s.commit == nil {
		return nil
	}
	return s.commit.write(ctx, w)
}

// reserveLocked checks the limits for a new publication of size bytes and
// reserves room for it; it returns 503 and a Retry-After when one is
// reached.
func (s *State) reserveLocked(res *resource, size int, now time.Time) (code, retryAfter int) {
	if res != nil && len(res.pubs)+res.reserved >= s.cfg.MaxPerResource {
		return 503, s.retryAfterLocked(res, now)
	}
	if s.count+s.reserved >= s.cfg.MaxPublications || s.bytes+size > s.cfg.MaxBytes {
		return 503, s.retryAfterLocked(nil, now)
	}
	s.reserved++
	s.bytes += size
	return 0, 0
}

// retryAfterLocked is the time until the next publication of res (or of
// any resource, with nil) lapses, at least one second.
func (s *State) retryAfterLocked(res *resource, now time.Time) int {
	var next time.Time
	if res == nil {
		if len(s.heap) > 0 {
			next = s.heap[0].p.Expires
		}
	} else {
		for _, e := range res.pubs {
			if next.IsZero() || e.p.Expires.Before(next) {
				next = e.p.Expires
			}
		}
	}
	d := int((next.Sub(now) + time.Second - 1) / time.Second)
	return max(d, 1)
}

func (r *resource) hasETag(etag string) bool {
	for _, e := range r.pubs {
		if e.p.ETag == etag {
			return true
		}
	}
	return false
}

// release undoes what Publish reserved or marked before a failure.
func (s *State) release(k resKey, old *entry, size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old != nil {
		s.unbusyLocked(old)
		return
	}
	s.reserved--
	s.bytes -= size
	res := s.res[k]
	res.reserved--
	if len(res.pubs) == 0 && res.reserved == 0 {
		delete(s.res, k)
	}
}

// unbusyLocked ends a request's hold on e; if Sweep passed over it
// meanwhile it goes back in the heap, where the next Sweep finds it.
func (s *State) unbusyLocked(e *entry) {
	e.busy = false
	if e.heapIdx < 0 {
		s.heap.push(e)
	}
}

// ms truncates t to what the store keeps, so that the state after a
// restart is the state before it.
func ms(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()) }

func (s *State) create(ctx context.Context, k resKey, r Request, mt, etag string, expires int, now time.Time, doc any) Result {
	now = ms(now)
	p := Publication{
		Event: r.Event, Resource: r.Resource, ETag: etag, ID: newTag(idBytes),
		ContentType: mt, Body: r.Body,
		Created: now, Updated: now, Expires: now.Add(time.Duration(expires) * time.Second),
	}
	if err := s.write(ctx, store.PublicationWrite{P: p}); err != nil {
		s.log.Error("store publication", "event", r.Event, "resource", r.Resource, "err", err)
		s.release(k, nil, len(r.Body))
		return Result{Code: 500}
	}
	e := &entry{p: p, key: k, doc: doc}
	s.mu.Lock()
	res := s.res[k]
	res.reserved--
	s.reserved--
	res.insert(e)
	s.heap.push(e)
	s.count++
	s.mu.Unlock()
	return Result{Code: 200, ETag: etag, Expires: expires, Changed: true}
}

func (s *State) update(ctx context.Context, old *entry, r Request, mt, etag string, expires int, now time.Time, doc any) Result {
	now = ms(now)
	s.mu.Lock()
	p := old.p // only this request changes old.p while it is busy
	s.mu.Unlock()
	prev := p.ETag
	changed := false
	p.ETag, p.Updated, p.Expires = etag, now, now.Add(time.Duration(expires)*time.Second)
	if len(r.Body) > 0 {
		// §6 step 5: a body replaces the state (modify); without one
		// the state is refreshed.
		changed = mt != p.ContentType || string(r.Body) != string(p.Body)
		p.ContentType, p.Body = mt, r.Body
	}
	if err := s.write(ctx, store.PublicationWrite{P: p, Replaces: prev}); err != nil {
		return s.storeFailed(old, err)
	}
	s.mu.Lock()
	s.bytes += len(p.Body) - len(old.p.Body)
	old.p = p
	if len(r.Body) > 0 {
		old.doc = doc
	}
	if old.heapIdx >= 0 {
		s.heap.fix(old)
	}
	s.unbusyLocked(old)
	s.mu.Unlock()
	return Result{Code: 200, ETag: etag, Expires: expires, Changed: changed}
}

func (s *State) remove(ctx context.Context, old *entry, etag string) Result {
	s.mu.Lock()
	p := old.p
	s.mu.Unlock()
	if err := s.write(ctx, store.PublicationWrite{P: p, Delete: true}); err != nil {
		return s.storeFailed(old, err)
	}
	s.mu.Lock()
	s.removeLocked(s.res[old.key], old)
	s.mu.Unlock()
	return Result{Code: 200, ETag: etag, Expires: 0, Changed: true}
}

// storeFailed ends a refresh, modification or removal the store refused.
// ErrNotFound means the row is gone — purged after it lapsed, or replaced
// by another server sharing the store — so the publication is gone here
// too and the client must publish anew (412, RFC 3903 §5).
func (s *State) storeFailed(old *entry, err error) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, store.ErrNotFound) {
		s.removeLocked(s.res[old.key], old)
		return Result{Code: 412, Changed: true}
	}
	s.log.Error("store publication", "event", old.key.event, "resource", old.key.resource, "err", err)
	s.unbusyLocked(old)
	return Result{Code: 500}
}
