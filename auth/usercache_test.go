package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/store"
)

// login answers a fresh challenge for aor with password and returns the
// verdict, as a phone registering would.
func (f *fixture) login(t *testing.T, user, password string) Result {
	t.Helper()
	aor := user + "@example.test"
	req := register(t, aor)
	res := f.challenge(t, req, Origin, user, "example.test")
	h := answer(t, res, Origin, "SHA-256", user, password, req, 1)
	return f.a.Check(context.Background(), register(t, aor, "Authorization: "+h+"\r\n"), Origin, user, "example.test")
}

// expect checks a verdict's outcome and reason.
func expect(t *testing.T, what string, r Result, outcome Outcome, reason string) {
	t.Helper()
	if r.Outcome != outcome || r.Reason != reason {
		t.Fatalf("%s: got %+v; want outcome %d reason %q", what, r, outcome, reason)
	}
}

// expectReads checks how many times the store's User was called so far.
func (f *fixture) expectReads(t *testing.T, what string, want int) {
	t.Helper()
	if reads, _ := f.users.counts(); reads != want {
		t.Fatalf("%s: the store was read %d times, want %d", what, reads, want)
	}
}

func TestUserCache(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		run  func(t *testing.T, f *fixture)
	}{
		{"repeated authentications read the store once", nil, func(t *testing.T, f *fixture) {
			for i := range 5 {
				expect(t, fmt.Sprint("login ", i), f.login(t, "alice", "secret"), Accepted, "")
			}
			f.expectReads(t, "5 logins", 1)
			if _, versions := f.users.counts(); versions != 1 {
				t.Fatalf("the version was read %d times within one interval, want 1", versions)
			}
			if got := testutil.ToFloat64(f.a.met.cache.hits); got != 4 {
				t.Errorf("user_cache_lookups_total{hit} = %v, want 4", got)
			}
			if got := testutil.ToFloat64(f.a.met.cache.misses); got != 1 {
				t.Errorf("user_cache_lookups_total{miss} = %v, want 1", got)
			}
			if n, err := testutil.GatherAndCount(f.reg, "hlas_auth_user_cache_entries"); err != nil || n != 1 {
				t.Errorf("user_cache_entries gauge: %d, %v", n, err)
			}
		}},
		{"IsSubscriber answers from the cache", nil, func(t *testing.T, f *fixture) {
			ctx := context.Background()
			for range 3 {
				if ok, err := f.a.IsSubscriber(ctx, "alice", "example.test"); !ok || err != nil {
					t.Fatalf("IsSubscriber(alice) = %v, %v", ok, err)
				}
				if ok, err := f.a.IsSubscriber(ctx, "mallory", "example.test"); ok || err != nil {
					t.Fatalf("IsSubscriber(mallory) = %v, %v", ok, err)
				}
			}
			f.expectReads(t, "three rounds", 2)
		}},
		{"an unchanged version keeps the cache after the interval", nil, func(t *testing.T, f *fixture) {
			expect(t, "login", f.login(t, "alice", "secret"), Accepted, "")
			f.clock.Add(DefaultUserCacheCheck)
			expect(t, "login after the interval", f.login(t, "alice", "secret"), Accepted, "")
			f.expectReads(t, "two logins", 1)
			if _, versions := f.users.counts(); versions != 2 {
				t.Fatalf("the version was read %d times over two intervals, want 2", versions)
			}
		}},
		{"a new password takes effect after user_cache_check", nil, func(t *testing.T, f *fixture) {
			expect(t, "login", f.login(t, "alice", "secret"), Accepted, "")
			f.users.put(NewUser("alice", "example.test", "s3cret"))
			// Within the interval the cache still answers: that is the
			// documented delay.
			expect(t, "old password within the interval", f.login(t, "alice", "secret"), Accepted, "")
			f.clock.Add(DefaultUserCacheCheck)
			expect(t, "old password after the interval", f.login(t, "alice", "secret"), Challenged, reasonWrongPassword)
			expect(t, "new password", f.login(t, "alice", "s3cret"), Accepted, "")
			f.expectReads(t, "after the change", 2)
			if got := testutil.ToFloat64(f.a.met.cache.flushes); got != 1 {
				t.Errorf("user_cache_flushes_total = %v, want 1", got)
			}
		}},
		{"a deleted user stops authenticating after user_cache_check", nil, func(t *testing.T, f *fixture) {
			expect(t, "login", f.login(t, "alice", "secret"), Accepted, "")
			f.users.del("alice@example.test")
			f.clock.Add(DefaultUserCacheCheck)
			expect(t, "login after the interval", f.login(t, "alice", "secret"), Challenged, reasonUnknownUser)
		}},
		{"an unknown name is remembered until a user is added", nil, func(t *testing.T, f *fixture) {
			for range 3 {
				expect(t, "unknown user", f.login(t, "mallory", "guess"), Challenged, reasonUnknownUser)
			}
			f.expectReads(t, "three guesses", 1)
			f.users.put(NewUser("mallory", "example.test", "guess"))
			f.clock.Add(DefaultUserCacheCheck)
			expect(t, "added user after the interval", f.login(t, "mallory", "guess"), Accepted, "")
		}},
		{"user_cache_check sets the interval", func(c *Config) { c.UserCacheCheck = 10 * DefaultUserCacheCheck }, func(t *testing.T, f *fixture) {
			expect(t, "login", f.login(t, "alice", "secret"), Accepted, "")
			f.users.del("alice@example.test")
			f.clock.Add(DefaultUserCacheCheck)
			expect(t, "within the longer interval", f.login(t, "alice", "secret"), Accepted, "")
			f.clock.Add(9 * DefaultUserCacheCheck)
			expect(t, "after it", f.login(t, "alice", "secret"), Challenged, reasonUnknownUser)
		}},
		{"a store that cannot be asked empties the cache", nil, func(t *testing.T, f *fixture) {
			expect(t, "login", f.login(t, "alice", "secret"), Accepted, "")
			f.users.setErr(errors.New("disk on fire"))
			f.clock.Add(DefaultUserCacheCheck)
			expect(t, "login with the store down", f.login(t, "alice", "secret"), Failed, "subscriber store unavailable")
			f.users.setErr(nil)
			expect(t, "store back, within the interval: read through", f.login(t, "alice", "secret"), Accepted, "")
			expect(t, "again", f.login(t, "alice", "secret"), Accepted, "")
			f.expectReads(t, "no caching until the version is read again", 4)
			f.clock.Add(DefaultUserCacheCheck)
			expect(t, "after the interval", f.login(t, "alice", "secret"), Accepted, "")
			expect(t, "again", f.login(t, "alice", "secret"), Accepted, "")
			f.expectReads(t, "cached again", 5)
		}},
		{"negative user_cache_size turns the cache off", func(c *Config) { c.UserCacheSize = -1 }, func(t *testing.T, f *fixture) {
			for range 3 {
				expect(t, "login", f.login(t, "alice", "secret"), Accepted, "")
			}
			f.expectReads(t, "three logins", 3)
			if _, versions := f.users.counts(); versions != 0 {
				t.Fatalf("the version was read %d times with the cache off", versions)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			tt.run(t, f)
		})
	}
}

// plainUsers hides UsersVersion: a store that cannot report changes.
type plainUsers struct{ Users }

func TestUserCacheNeedsVersions(t *testing.T) {
	users := newMemUsers(NewUser("alice", "example.test", "secret"))
	a, err := New(Config{}, Env{Secret: secret, Users: plainUsers{users}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.user(context.Background(), a.env.Now(), "alice", "example.test"); err != nil {
			t.Fatal(err)
		}
	}
	if reads, _ := users.counts(); reads != 3 {
		t.Fatalf("a store without versions was read %d times for 3 lookups, want 3", reads)
	}
}

func TestUserCacheBounded(t *testing.T) {
	const size = 4
	f := newFixture(t, func(c *Config) { c.UserCacheSize = size })
	for i := range 3 * size {
		f.users.put(NewUser(fmt.Sprint("user", i), "example.test", "pw"))
	}
	f.clock.Add(DefaultUserCacheCheck) // the puts changed the version
	ctx := context.Background()
	for i := range 3 * size {
		if _, err := f.a.user(ctx, f.clock.Now(), fmt.Sprint("user", i), "example.test"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.a.user(ctx, f.clock.Now(), fmt.Sprint("nobody", i), "example.test"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown user: %v", err)
		}
	}
	c := f.a.users
	c.mu.RLock()
	known, unknown := len(c.known), len(c.unknown)
	c.mu.RUnlock()
	if known != size || unknown != size {
		t.Fatalf("cache holds %d subscribers and %d unknown names, want %d of each", known, unknown, size)
	}
	// Unknown names, however many, leave subscribers alone.
	for i := range 10 * size {
		_, _ = f.a.user(ctx, f.clock.Now(), fmt.Sprint("scan", i), "example.test")
	}
	c.mu.RLock()
	known = len(c.known)
	c.mu.RUnlock()
	if known != size {
		t.Fatalf("a scan of unknown names left %d subscribers cached, want %d", known, size)
	}
}

// TestUserCacheRacingChange: a lookup that read the store before a change
// and returns after the cache was emptied for it must not put the old
// hashes back.
func TestUserCacheRacingChange(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	old := NewUser("alice", "example.test", "secret")
	// Prime the version so the in-flight lookup below belongs to an epoch.
	if _, err := f.a.user(ctx, f.clock.Now(), "bob", "example.test"); err != nil {
		t.Fatal(err)
	}
	inRead, release := f.users.pauseOnce(&f.users.afterRead)
	done := make(chan hashes)
	go func() {
		h, _ := f.a.user(ctx, f.clock.Now(), "alice", "example.test")
		done <- h
	}()
	<-inRead // the lookup holds alice's old hashes
	f.users.put(NewUser("alice", "example.test", "s3cret"))
	f.clock.Add(DefaultUserCacheCheck)
	// This lookup sees the new version, empties the cache and reads alice anew.
	h, err := f.a.user(ctx, f.clock.Now(), "alice", "example.test")
	if err != nil || h.sha256 == old.HA1SHA256 {
		t.Fatalf("lookup after the change: %v, old hashes %v", err, h.sha256 == old.HA1SHA256)
	}
	close(release)
	if h := <-done; h.sha256 != old.HA1SHA256 {
		t.Fatal("the in-flight lookup should have returned what it read")
	}
	h, err = f.a.user(ctx, f.clock.Now(), "alice", "example.test")
	if err != nil || h.sha256 == old.HA1SHA256 {
		t.Fatalf("the late answer of an in-flight lookup was kept: %v, old hashes %v", err, h.sha256 == old.HA1SHA256)
	}
}

// TestUserCacheCancelledCheck: a request that gives up while the version
// is read leaves the cache as it was, and the next lookup checks.
func TestUserCacheCancelledCheck(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	if _, err := f.a.user(context.Background(), now, "alice", "example.test"); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(DefaultUserCacheCheck)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The check fails for the cancelled request; alice still comes from
	// memory.
	if _, err := f.a.user(ctx, f.clock.Now(), "alice", "example.test"); err != nil {
		t.Fatal(err)
	}
	f.expectReads(t, "after a cancelled check", 1)
	_, before := f.users.counts()
	if _, err := f.a.user(context.Background(), f.clock.Now(), "alice", "example.test"); err != nil {
		t.Fatal(err)
	}
	if _, after := f.users.counts(); after != before+1 {
		t.Fatal("the lookup after a cancelled check did not check")
	}
	f.expectReads(t, "after the check", 1)
}

// TestUserCacheConcurrent runs lookups, changes and interval crossings
// together, for the race detector; every answer must be one the store
// gave at some point.
func TestUserCacheConcurrent(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.UserCacheSize = 8 })
	ctx := context.Background()
	valid := map[string]bool{}
	for i := range 4 {
		u := NewUser("alice", "example.test", fmt.Sprint("pw", i))
		valid[u.HA1SHA256] = true
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				name := []string{"alice", "bob", "nobody", fmt.Sprint("u", i%20)}[i%4]
				h, err := f.a.user(ctx, f.clock.Now(), name, "example.test")
				if name == "alice" && err == nil && !valid[h.sha256] && h.sha256 != NewUser("alice", "example.test", "secret").HA1SHA256 {
					t.Errorf("goroutine %d: hashes no store ever held", g)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			f.users.put(NewUser("alice", "example.test", fmt.Sprint("pw", i%4)))
			f.clock.Add(DefaultUserCacheCheck)
		}
	})
	wg.Wait()
	// Quiet now: one interval later the cache answers what the store holds.
	f.clock.Add(DefaultUserCacheCheck)
	want, _ := f.users.User(ctx, "alice", "example.test")
	if h, err := f.a.user(ctx, f.clock.Now(), "alice", "example.test"); err != nil || h.sha256 != want.HA1SHA256 {
		t.Fatalf("after the changes: %v; cache and store disagree", err)
	}
}

// TestUserCacheOneCheck: while one lookup reads the version, the others
// answer from the cache instead of asking too.
func TestUserCacheOneCheck(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.a.user(ctx, f.clock.Now(), "alice", "example.test"); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(DefaultUserCacheCheck)
	inVersion, release := f.users.pauseOnce(&f.users.inVersion)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = f.a.user(ctx, f.clock.Now(), "alice", "example.test")
	}()
	<-inVersion
	for range 3 {
		if _, err := f.a.user(ctx, f.clock.Now(), "alice", "example.test"); err != nil {
			t.Fatal(err)
		}
	}
	// One read finished before (the first lookup's); the blocked one has
	// not finished yet.
	if _, versions := f.users.counts(); versions != 1 {
		t.Fatalf("%d version reads finished while one was under way, want 1 (the first lookup's)", versions)
	}
	close(release)
	<-done
	f.expectReads(t, "all lookups", 1)
}

// hangingUsers is a store whose version read, when hang is set, runs
// into its deadline (reported at once rather than waited for).
type hangingUsers struct {
	*memUsers
	hang     atomic.Bool
	deadline atomic.Bool // the last read had a deadline
}

func (h *hangingUsers) UsersVersion(ctx context.Context) (int64, error) {
	_, ok := ctx.Deadline()
	h.deadline.Store(ok)
	if h.hang.Load() {
		return 0, context.DeadlineExceeded
	}
	return h.memUsers.UsersVersion(ctx)
}

// TestUserCacheVersionDeadline: the version read has a deadline, and a
// read that runs into it empties the cache like a failure, though the
// request's own context is fine.
func TestUserCacheVersionDeadline(t *testing.T) {
	users := &hangingUsers{memUsers: newMemUsers(NewUser("alice", "example.test", "secret"))}
	clock := &clock{now: time.Unix(1_800_000_000, 0)}
	a, err := New(Config{}, Env{Secret: secret, Users: users, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := a.user(ctx, clock.Now(), "alice", "example.test"); err != nil {
		t.Fatal(err)
	}
	if !users.deadline.Load() {
		t.Fatal("the version read has no deadline")
	}
	users.hang.Store(true)
	clock.Add(DefaultUserCacheCheck)
	if _, err := a.user(ctx, clock.Now(), "alice", "example.test"); err != nil {
		t.Fatal(err)
	}
	if reads, _ := users.counts(); reads != 2 {
		t.Fatalf("after a version read that timed out the store was read %d times, want 2 (cache emptied)", reads)
	}
}
