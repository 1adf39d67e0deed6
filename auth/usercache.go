package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/store"
)

// VersionedUsers is a subscriber store that can tell when its subscribers
// change: store.Users is one. With it the Authenticator keeps the
// subscribers it has read in memory (Config.UserCacheSize) instead of
// reading the store for every request.
type VersionedUsers interface {
	Users
	// UsersVersion returns a number that changes, in the same commit,
	// whenever a subscriber is added, changed or removed by any process
	// (see store.Users).
	UsersVersion(ctx context.Context) (int64, error)
}

// minVersionTimeout is the least time a read of the users version is
// given; otherwise it has UserCacheCheck.
const minVersionTimeout = time.Second

// userKey names a subscriber in the cache; a struct of the two strings,
// so a lookup builds no "user@domain" string.
type userKey struct {
	username, domain string
}

// hashes are what the cache keeps of a subscriber: its digest hashes.
type hashes struct {
	md5, sha256 string
}

// userCache keeps the subscribers the store returned, and the names it
// did not know, until the store's users version changes.
//
// The version is read at most once per interval, lazily: the first lookup
// after the interval reads it itself while concurrent lookups go on with
// the cache, so no goroutine runs in the background and none is started
// per request. A change of version empties the cache; so does a failure to
// read the version, after which lookups go to the store until a read
// succeeds. A change made by `hlas user` therefore takes effect within the
// interval, plus the version read, which is given the interval (at least
// a second) before it counts as failed.
//
// Every emptying starts a new epoch. A lookup remembers the epoch before
// it reads the store and keeps the answer only if the epoch has not moved:
// a subscriber read before a change, whose answer arrives after the cache
// was emptied for that change, is not kept. Because the version is read
// before the epoch starts, and a store read is made after its epoch
// started, everything kept in an epoch is at least as new as the version
// that began it; while the version stays the same, it is current.
type userCache struct {
	users VersionedUsers
	size  int           // bound of each map
	every time.Duration // between version reads
	log   *slog.Logger
	met   cacheMetrics

	checking atomic.Bool // one version read at a time

	mu      sync.RWMutex
	known   map[userKey]hashes   // subscribers
	unknown map[userKey]struct{} // names the store did not know
	next    time.Time            // when the version is read again
	version int64
	valid   bool   // version was read and the maps belong to it
	epoch   uint64 // emptyings so far
}

type cacheMetrics struct {
	hits, misses, flushes prometheus.Counter
}

// newUserCache returns an empty cache; its metrics are set before its
// first lookup.
func newUserCache(users VersionedUsers, size int, every time.Duration, log *slog.Logger) *userCache {
	return &userCache{
		users: users, size: size, every: every, log: log,
		known: make(map[userKey]hashes), unknown: make(map[userKey]struct{}),
	}
}

// user returns the digest hashes of username@domain, or store.ErrNotFound,
// from memory when it can; now is the Authenticator's clock.
func (c *userCache) user(ctx context.Context, now time.Time, username, domain string) (hashes, error) {
	k := userKey{username, domain}
	c.mu.RLock()
	if !now.Before(c.next) {
		c.mu.RUnlock()
		c.check(ctx, now)
		c.mu.RLock()
	}
	if h, ok := c.known[k]; ok {
		c.mu.RUnlock()
		c.met.hits.Inc()
		return h, nil
	}
	_, unknown := c.unknown[k]
	epoch, valid := c.epoch, c.valid
	c.mu.RUnlock()
	if unknown {
		c.met.hits.Inc()
		return hashes{}, store.ErrNotFound
	}
	c.met.misses.Inc()
	u, err := c.users.User(ctx, username, domain)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return hashes{}, err
	}
	if valid {
		c.keep(epoch, k, hashes{u.HA1MD5, u.HA1SHA256}, err == nil)
	}
	if err != nil {
		return hashes{}, err
	}
	return hashes{u.HA1MD5, u.HA1SHA256}, nil
}

// keep stores what the store said about k, read in epoch, unless the
// cache has been emptied since. Full maps lose an entry chosen at random
// (Go's map iteration order), which needs no bookkeeping on hits. Unknown
// names have a map of their own, so a scan of many names cannot push
// subscribers out.
func (c *userCache) keep(epoch uint64, k userKey, h hashes, found bool) {
	// The request's strings may point into its datagram: copy them, so a
	// cache entry does not hold a whole message.
	k = userKey{strings.Clone(k.username), strings.Clone(k.domain)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch || !c.valid {
		return
	}
	if found {
		if len(c.known) >= c.size {
			for old := range c.known {
				delete(c.known, old)
				break
			}
		}
		c.known[k] = h
		return
	}
	if len(c.unknown) >= c.size {
		for old := range c.unknown {
			delete(c.unknown, old)
			break
		}
	}
	c.unknown[k] = struct{}{}
}

// check reads the store's users version, unless another lookup is
// already doing so, and empties the cache when it changed or cannot be
// read.
func (c *userCache) check(ctx context.Context, now time.Time) {
	if !c.checking.CompareAndSwap(false, true) {
		return // the cache serves meanwhile
	}
	defer c.checking.Store(false)
	c.mu.RLock()
	due := !now.Before(c.next)
	c.mu.RUnlock()
	if !due {
		return // another lookup has just checked
	}
	// The other lookups use the cache while this read lasts, so it has a
	// deadline: a store that hangs empties the cache like one that fails.
	vctx, cancel := context.WithTimeout(ctx, max(c.every, minVersionTimeout))
	v, err := c.users.UsersVersion(vctx)
	cancel()
	if err != nil && ctx.Err() != nil {
		return // this request gave up; the next lookup checks
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next = now.Add(c.every)
	switch {
	case err != nil:
		if c.valid || len(c.known)+len(c.unknown) > 0 {
			c.log.Error("subscriber cache emptied: cannot read the users version", "err", err)
		}
		c.flush()
		c.valid = false
	case !c.valid || v != c.version:
		if c.valid {
			c.log.Debug("subscribers changed: cache emptied", "version", v)
		}
		c.flush()
		c.version, c.valid = v, true
	}
}

// flush empties the maps and starts a new epoch; c.mu is held.
func (c *userCache) flush() {
	if len(c.known)+len(c.unknown) > 0 {
		c.met.flushes.Inc()
		c.known = make(map[userKey]hashes)
		c.unknown = make(map[userKey]struct{})
	}
	c.epoch++
}

// len returns the number of entries, for the gauge.
func (c *userCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.known) + len(c.unknown)
}
