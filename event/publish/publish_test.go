package publish

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const alice = "alice@example.test"

// TestRFC3903Example walks the life of one publication as RFC 3903 §4
// (Table 1) and its example flow show it: initial, refresh, modify,
// remove — each answered with a new entity-tag.
func TestRFC3903Example(t *testing.T) {
	c := newClock()
	st := newMemStore()
	s := newState(t, Config{}, st, c)

	r1 := mustOK(t, s, initial(alice, "<presence>open</presence>", 3600))
	if r1.Expires != 3600 || r1.ETag == "" || !r1.Changed {
		t.Fatalf("initial = %+v, want Expires 3600, an ETag, Changed", r1)
	}
	r2 := mustOK(t, s, refresh(alice, r1.ETag, 3600))
	if r2.ETag == r1.ETag || r2.Expires != 3600 || r2.Changed {
		t.Fatalf("refresh = %+v, want a new ETag (§6 step 6), Expires 3600, no change", r2)
	}
	if got := s.Current("presence", alice); len(got) != 1 || string(got[0].Body) != "<presence>open</presence>" {
		t.Fatalf("after refresh Current = %+v, want the initial body kept", got)
	}
	r3 := mustOK(t, s, modify(alice, r2.ETag, "<presence>closed</presence>", 3600))
	if r3.ETag == r2.ETag || r3.ETag == r1.ETag || !r3.Changed {
		t.Fatalf("modify = %+v, want a third ETag and Changed", r3)
	}
	if got := s.Current("presence", alice); len(got) != 1 || string(got[0].Body) != "<presence>closed</presence>" {
		t.Fatalf("after modify Current = %+v", got)
	}
	if got := st.etags(); !slices.Equal(got, []string{r3.ETag}) {
		t.Fatalf("store holds %v, want [%s]", got, r3.ETag)
	}
	r4 := mustOK(t, s, refresh(alice, r3.ETag, 0))
	if r4.Expires != 0 || !r4.Changed || r4.ETag == r3.ETag {
		t.Fatalf("remove = %+v, want Expires 0, Changed, a fresh ETag", r4)
	}
	if got := s.Current("presence", alice); len(got) != 0 || s.Count() != 0 || len(st.etags()) != 0 {
		t.Fatalf("after remove: Current %v, Count %d, store %v; want nothing", got, s.Count(), st.etags())
	}
	// Every ETag used is now stale.
	for _, e := range []string{r1.ETag, r2.ETag, r3.ETag, r4.ETag} {
		if res := s.Publish(context.Background(), refresh(alice, e, 3600)); res.Code != 412 {
			t.Errorf("refresh with spent ETag %s = %d, want 412", e, res.Code)
		}
	}
	if len(s.res) != 0 {
		t.Errorf("%d resources still held after the last removal", len(s.res))
	}
}

// TestProcessing covers RFC 3903 §6, step by step, as a table.
func TestProcessing(t *testing.T) {
	type setup func(t *testing.T, s *State, c *clock) string // returns a live ETag of alice
	live := func(t *testing.T, s *State, c *clock) string {
		return mustOK(t, s, initial(alice, "<presence/>", 3600)).ETag
	}
	lapsed := func(t *testing.T, s *State, c *clock) string {
		e := mustOK(t, s, initial(alice, "<presence/>", 60)).ETag
		c.Advance(61 * time.Second) // lapsed, not yet swept
		return e
	}
	cases := []struct {
		name  string
		setup setup
		req   func(etag string) Request
		want  Result
	}{
		{"§6 step 2: unknown event package → 489", nil,
			func(string) Request { r := initial(alice, "<presence/>", 3600); r.Event = "foo"; return r },
			Result{Code: 489}},
		{"§6 step 3: unknown entity-tag → 412", live,
			func(string) Request { return refresh(alice, "no-such-tag", 3600) }, Result{Code: 412}},
		{"§6 step 3: entity-tag of another resource → 412", live,
			func(e string) Request { return refresh("bob@example.test", e, 3600) }, Result{Code: 412}},
		{"§6 step 3: entity-tag of another event package → 412", live,
			func(e string) Request { r := refresh(alice, e, 3600); r.Event = "dialog"; return r }, Result{Code: 412}},
		{"§6 step 3: lapsed entity-tag → 412", lapsed,
			func(e string) Request { return refresh(alice, e, 3600) }, Result{Code: 412}},
		{"§6 step 3: two entity-tags → 400", live,
			func(e string) Request { return refresh(alice, e+", "+e, 3600) },
			Result{Code: 400, Warning: "SIP-If-Match must hold one entity-tag"}},
		{"§6 step 3 before step 4: unknown tag with a brief Expires → 412", live,
			func(string) Request { return refresh(alice, "nope", 5) }, Result{Code: 412}},
		{"§6 step 4: interval too brief → 423 with Min-Expires", nil,
			func(string) Request { return initial(alice, "<presence/>", 59) }, Result{Code: 423, MinExpires: 60}},
		{"§6 step 4: brief refresh → 423", live,
			func(e string) Request { return refresh(alice, e, 1) }, Result{Code: 423, MinExpires: 60}},
		{"§6 step 4: longer than the maximum → shortened", nil,
			func(string) Request { return initial(alice, "<presence/>", 7200) }, Result{Code: 200, Expires: 3600, Changed: true}},
		{"§6 step 4: no Expires → the default", nil,
			func(string) Request { return initial(alice, "<presence/>", -1) }, Result{Code: 200, Expires: 1800, Changed: true}},
		{"§6 step 4: the minimum itself is accepted", nil,
			func(string) Request { return initial(alice, "<presence/>", 60) }, Result{Code: 200, Expires: 60, Changed: true}},
		{"negative Expires → 400", nil,
			func(string) Request { return initial(alice, "<presence/>", -7) }, Result{Code: 400, Warning: "bad Expires"}},
		{"§6 step 5: body of a type the package does not use → 415 with Accept", nil,
			func(string) Request {
				r := initial(alice, "<presence/>", 3600)
				r.ContentType = "text/plain"
				return r
			}, Result{Code: 415, Accept: []string{pidf}}},
		{"§6 step 5: Content-Type parameters and case are ignored", nil,
			func(string) Request {
				r := initial(alice, "<presence/>", 3600)
				r.ContentType = "Application/PIDF+XML; charset=utf-8"
				return r
			}, Result{Code: 200, Expires: 3600, Changed: true}},
		{"§6 step 5: body without Content-Type → 415", nil,
			func(string) Request { r := initial(alice, "<presence/>", 3600); r.ContentType = ""; return r },
			Result{Code: 415, Accept: []string{pidf}}},
		{"§6 step 5: modify with the wrong type → 415", live,
			func(e string) Request { r := modify(alice, e, "x", 3600); r.ContentType = "text/plain"; return r },
			Result{Code: 415, Accept: []string{pidf}}},
		{"§6 step 5: invalid body → 400 with the parse error", nil,
			func(string) Request { return initial(alice, "<bogus/>", 3600) },
			Result{Code: 400, Warning: "not a PIDF document"}},
		{"§6 step 5: initial publication without a body → 400", nil,
			func(string) Request { return Request{Event: "presence", Resource: alice, Expires: 3600} },
			Result{Code: 400, Warning: "an initial publication needs a body"}},
		{"§6 step 5: initial publication with Expires 0 stores nothing", nil,
			func(string) Request { return initial(alice, "<presence/>", 0) }, Result{Code: 200, Expires: 0}},
		{"§6 step 5: refresh without a body", live,
			func(e string) Request { return refresh(alice, e, 600) }, Result{Code: 200, Expires: 600}},
		{"§6 step 5: modify with the same body changes nothing", live,
			func(e string) Request { return modify(alice, e, "<presence/>", 600) }, Result{Code: 200, Expires: 600}},
		{"§6 step 5: remove", live,
			func(e string) Request { return refresh(alice, e, 0) }, Result{Code: 200, Expires: 0, Changed: true}},
		{"body above max_body → 413", nil,
			func(string) Request {
				return initial(alice, "<presence>"+strings.Repeat("x", 1024)+"</presence>", 3600)
			},
			Result{Code: 413}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			st := newMemStore()
			s := newState(t, Config{DefaultExpires: 1800 * time.Second, MaxBody: 1024}, st, c)
			etag := ""
			if tc.setup != nil {
				etag = tc.setup(t, s, c)
			}
			before := st.etags()
			beforeMem := memEtags(s)
			got := s.Publish(context.Background(), tc.req(etag))
			if got.Code == 200 {
				if got.ETag == "" || !isToken(got.ETag) || got.ETag == etag {
					t.Errorf("200 with ETag %q, want a new token", got.ETag)
				}
				got.ETag = ""
			}
			if got.Code != tc.want.Code || got.Expires != tc.want.Expires || got.MinExpires != tc.want.MinExpires ||
				got.Warning != tc.want.Warning || got.Changed != tc.want.Changed || !slices.Equal(got.Accept, tc.want.Accept) ||
				got.ETag != "" {
				t.Fatalf("Publish = %+v, want %+v", got, tc.want)
			}
			if got.Code != 200 {
				// A refused PUBLISH changes nothing (§6: atomic).
				if after := st.etags(); !slices.Equal(after, before) {
					t.Errorf("store changed by a %d: %v → %v", got.Code, before, after)
				}
				if after := memEtags(s); !slices.Equal(after, beforeMem) {
					t.Errorf("state changed by a %d: %v → %v", got.Code, beforeMem, after)
				}
			}
			// Memory and store agree after every request.
			if !slices.Equal(memEtags(s), st.etags()) {
				t.Errorf("memory %v, store %v", memEtags(s), st.etags())
			}
		})
	}
}

// TestInvalidModifyKeepsState: a modification with a bad body is refused
// and the old state and its ETag stay (§6 step 5: never stored).
func TestInvalidModifyKeepsState(t *testing.T) {
	c := newClock()
	s := newState(t, Config{}, newMemStore(), c)
	e := mustOK(t, s, initial(alice, "<presence>one</presence>", 3600)).ETag
	if res := s.Publish(context.Background(), modify(alice, e, "garbage", 3600)); res.Code != 400 {
		t.Fatalf("bad modify = %+v, want 400", res)
	}
	got := s.Current("presence", alice)
	if len(got) != 1 || got[0].ETag != e || string(got[0].Body) != "<presence>one</presence>" {
		t.Fatalf("Current = %+v, want the old state", got)
	}
	mustOK(t, s, refresh(alice, e, 3600))
}

// TestDevices: each device's publication is kept apart, and Current lists
// them oldest first with IDs that last across refreshes.
func TestDevices(t *testing.T) {
	c := newClock()
	s := newState(t, Config{}, newMemStore(), c)
	phone := mustOK(t, s, initial(alice, "<presence>phone</presence>", 3600))
	c.Advance(time.Second)
	desk := mustOK(t, s, initial(alice, "<presence>desk</presence>", 3600))
	mustOK(t, s, initial("bob@example.test", "<presence>bob</presence>", 3600))
	got := s.Current("presence", alice)
	if len(got) != 2 || got[0].ETag != phone.ETag || got[1].ETag != desk.ETag || got[0].ID == got[1].ID {
		t.Fatalf("Current = %+v, want phone then desk", got)
	}
	phoneID := got[0].ID
	c.Advance(time.Second)
	p2 := mustOK(t, s, modify(alice, phone.ETag, "<presence>phone2</presence>", 3600))
	got = s.Current("presence", alice)
	if len(got) != 2 || got[0].ETag != p2.ETag || got[0].ID != phoneID || string(got[0].Body) != "<presence>phone2</presence>" {
		t.Fatalf("after modify Current = %+v, want phone (same ID, new body) first", got)
	}
	mustOK(t, s, refresh(alice, p2.ETag, 0))
	if got := etagsOf(s, alice); !slices.Equal(got, []string{desk.ETag}) {
		t.Fatalf("after removing the phone: %v, want the desk only", got)
	}
	if s.Count() != 2 {
		t.Fatalf("Count = %d, want 2", s.Count())
	}
	if got := s.Current("dialog", alice); got != nil {
		t.Fatalf("dialog state of alice = %+v, want none", got)
	}
}

// TestExpiry: Sweep drops lapsed publications, tells OnExpire once per
// resource, purges the store, and a refresh keeps a publication alive.
func TestExpiry(t *testing.T) {
	c := newClock()
	st := newMemStore()
	var mu sync.Mutex
	var expired []string
	s, err := New(Config{}, Env{Now: c.Now, Store: st, OnExpire: func(event, resource string) {
		mu.Lock()
		expired = append(expired, event+" "+resource)
		mu.Unlock()
	}}, codecs())
	if err != nil {
		t.Fatal(err)
	}
	a1 := mustOK(t, s, initial(alice, "<presence/>", 60))
	mustOK(t, s, initial(alice, "<presence/>", 120))
	b := mustOK(t, s, initial("bob@example.test", "<presence/>", 60))
	d := mustOK(t, s, Request{Event: "dialog", Resource: alice, Expires: 600, ContentType: "application/dialog-info+xml", Body: []byte("<dialog-info/>")})
	if next, ok := s.NextExpiry(); !ok || !next.Equal(c.Now().Add(60*time.Second)) {
		t.Fatalf("NextExpiry = %v, %v", next, ok)
	}
	c.Advance(50 * time.Second)
	b2 := mustOK(t, s, refresh("bob@example.test", b.ETag, 60))
	c.Advance(10 * time.Second)
	// alice's first publication lapsed; Current no longer shows it even
	// before Sweep.
	if got := s.Current("presence", alice); len(got) != 1 || got[0].ETag == a1.ETag {
		t.Fatalf("Current at expiry = %+v, want the 120 s one only", got)
	}
	s.Sweep(c.Now())
	if !slices.Equal(expired, []string{"presence " + alice}) {
		t.Fatalf("OnExpire calls %v, want alice's presence once", expired)
	}
	if s.Count() != 3 || slices.Contains(st.etags(), a1.ETag) {
		t.Fatalf("after Sweep: Count %d, store %v", s.Count(), st.etags())
	}
	c.Advance(60 * time.Second)
	expired = nil
	s.Sweep(c.Now())
	slices.Sort(expired)
	if !slices.Equal(expired, []string{"presence " + alice, "presence bob@example.test"}) {
		t.Fatalf("OnExpire calls %v", expired)
	}
	if s.Count() != 1 || !slices.Equal(st.etags(), []string{d.ETag}) {
		t.Fatalf("left: Count %d, store %v; want the dialog publication", s.Count(), st.etags())
	}
	if res := s.Publish(context.Background(), refresh("bob@example.test", b2.ETag, 60)); res.Code != 412 {
		t.Fatalf("refresh after expiry = %d, want 412", res.Code)
	}
	expired = nil
	s.Sweep(c.Now()) // nothing lapsed
	if len(expired) != 0 {
		t.Fatalf("idle Sweep called OnExpire %v", expired)
	}
	if _, ok := s.NextExpiry(); !ok {
		t.Fatal("NextExpiry: none, want the dialog publication's")
	}
}

// TestLimits: beyond max_per_resource, max_publications or max_bytes a
// new publication gets 503 with Retry-After; updates still work.
func TestLimits(t *testing.T) {
	t.Run("per resource", func(t *testing.T) {
		c := newClock()
		s := newState(t, Config{MaxPerResource: 2}, nil, c)
		first := mustOK(t, s, initial(alice, "<presence/>", 600))
		c.Advance(100 * time.Second)
		mustOK(t, s, initial(alice, "<presence/>", 3600))
		res := s.Publish(context.Background(), initial(alice, "<presence/>", 3600))
		if res.Code != 503 || res.RetryAfter != 500 {
			t.Fatalf("third device = %+v, want 503 Retry-After 500 (the first lapses then)", res)
		}
		mustOK(t, s, initial("bob@example.test", "<presence/>", 3600))
		mustOK(t, s, modify(alice, first.ETag, "<presence>x</presence>", 3600))
	})
	t.Run("total", func(t *testing.T) {
		c := newClock()
		s := newState(t, Config{MaxPublications: 2}, nil, c)
		mustOK(t, s, initial("a@x", "<presence/>", 300))
		e := mustOK(t, s, initial("b@x", "<presence/>", 3600)).ETag
		if res := s.Publish(context.Background(), initial("c@x", "<presence/>", 3600)); res.Code != 503 || res.RetryAfter != 300 {
			t.Fatalf("third = %+v, want 503 Retry-After 300", res)
		}
		mustOK(t, s, refresh("b@x", e, 0))
		mustOK(t, s, initial("c@x", "<presence/>", 3600))
	})
	t.Run("bytes", func(t *testing.T) {
		c := newClock()
		s := newState(t, Config{MaxBody: 40, MaxBytes: 100}, nil, c)
		if res := s.Publish(context.Background(), initial("a@x", body(41), 3600)); res.Code != 413 {
			t.Fatalf("41-byte body = %+v, want 413 (max_body 40)", res)
		}
		a := mustOK(t, s, initial("a@x", body(40), 3600)).ETag
		mustOK(t, s, initial("b@x", body(40), 3600))
		if res := s.Publish(context.Background(), initial("c@x", body(21), 3600)); res.Code != 503 || res.RetryAfter != 3600 {
			t.Fatalf("80 + 21 bytes = %+v, want 503 Retry-After 3600", res)
		}
		cc := mustOK(t, s, initial("c@x", body(20), 3600)).ETag // exactly 100
		if res := s.Publish(context.Background(), modify("c@x", cc, body(21), 3600)); res.Code != 503 {
			t.Fatalf("growing modify = %+v, want 503", res)
		}
		cc = mustOK(t, s, modify("c@x", cc, body(19), 3600)).ETag
		mustOK(t, s, refresh("a@x", a, 0))
		mustOK(t, s, modify("c@x", cc, body(40), 3600))
		s.mu.Lock()
		held := s.bytes
		s.mu.Unlock()
		if held != 80 {
			t.Fatalf("bytes held = %d, want 80", held)
		}
	})
}

// body returns a valid test document of n bytes (n >= 11).
func body(n int) string { return "<presence" + strings.Repeat(" ", n-11) + "/>" }

// TestStoreFirst: the store write completes before Publish answers, and
// before the new state is visible; a store failure fails the PUBLISH with
// 500 and changes nothing (RFC 3903 §6: atomic).
func TestStoreFirst(t *testing.T) {
	c := newClock()
	st := newMemStore()
	s := newState(t, Config{}, st, c)
	e1 := mustOK(t, s, initial(alice, "<presence>1</presence>", 3600)).ETag
	var sawOld bool
	st.onWrite = func() { sawOld = slices.Equal(etagsOf(s, alice), []string{e1}) }
	e2 := mustOK(t, s, modify(alice, e1, "<presence>2</presence>", 3600)).ETag
	if !sawOld {
		t.Fatal("the new state was visible before the store write")
	}
	if !slices.Equal(st.etags(), []string{e2}) {
		t.Fatalf("store %v after the 200, want [%s]", st.etags(), e2)
	}
	st.onWrite = nil

	st.fail = errors.New("disk full")
	for _, r := range []Request{
		initial(alice, "<presence>3</presence>", 3600),
		refresh(alice, e2, 3600),
		modify(alice, e2, "<presence>3</presence>", 3600),
		refresh(alice, e2, 0),
	} {
		if res := s.Publish(context.Background(), r); res.Code != 500 || res.Changed {
			t.Fatalf("Publish(%+v) with a failing store = %+v, want 500", r, res)
		}
		if got := s.Current("presence", alice); len(got) != 1 || got[0].ETag != e2 || string(got[0].Body) != "<presence>2</presence>" {
			t.Fatalf("state after a failed write: %+v", got)
		}
		if s.Count() != 1 {
			t.Fatalf("Count = %d", s.Count())
		}
	}
	st.fail = nil
	mustOK(t, s, refresh(alice, e2, 3600)) // the ETag is still good
}

// TestStoreLostRow: the row of a publication is gone from the store (its
// lapse purged it, or another server sharing the store replaced it): the
// refresh gets 412 and the publication is dropped here too.
func TestStoreLostRow(t *testing.T) {
	c := newClock()
	st := newMemStore()
	s := newState(t, Config{}, st, c)
	e := mustOK(t, s, initial(alice, "<presence/>", 3600)).ETag
	if err := st.DeletePublication(context.Background(), "presence", alice, e); err != nil {
		t.Fatal(err)
	}
	if res := s.Publish(context.Background(), refresh(alice, e, 3600)); res.Code != 412 || !res.Changed {
		t.Fatalf("refresh of a lost row = %+v, want 412 and Changed", res)
	}
	if s.Count() != 0 || s.Current("presence", alice) != nil {
		t.Fatalf("publication kept: Count %d", s.Count())
	}
}

// TestRestart: a new State over the same store holds the same state, and
// the ETags given before the restart still work (issue 14 item 5).
func TestRestart(t *testing.T) {
	c := newClock()
	st := newMemStore()
	s := newState(t, Config{}, st, c)
	a := mustOK(t, s, initial(alice, "<presence>a</presence>", 3600))
	c.Advance(1500 * time.Microsecond)
	b := mustOK(t, s, initial(alice, "<presence>b</presence>", 600))
	mustOK(t, s, initial("bob@example.test", "<presence>bob</presence>", 60))
	mustOK(t, s, Request{Event: "dialog", Resource: alice, Expires: 600, ContentType: "application/dialog-info+xml", Body: []byte("<d/>")})
	a = mustOK(t, s, refresh(alice, a.ETag, 3600))
	before := s.Current("presence", alice)
	c.Advance(61 * time.Second) // bob's lapses while the server is down

	s2 := newState(t, Config{}, st, c)
	if got := s2.Current("presence", alice); !slices.EqualFunc(got, before, samePub) {
		t.Fatalf("after restart Current = %+v, want %+v", got, before)
	}
	if s2.Count() != 3 {
		t.Fatalf("after restart Count = %d, want 3 (bob's lapsed)", s2.Count())
	}
	if len(st.etags()) != 3 {
		t.Fatalf("lapsed rows not purged at load: %v", st.etags())
	}
	mustOK(t, s2, refresh(alice, a.ETag, 3600))
	mustOK(t, s2, refresh(alice, b.ETag, 0))
	if next, ok := s2.NextExpiry(); !ok || next.After(c.Now().Add(3600*time.Second)) {
		t.Fatalf("NextExpiry after restart = %v, %v", next, ok)
	}
}

func samePub(a, b Publication) bool {
	return a.Event == b.Event && a.Resource == b.Resource && a.ETag == b.ETag && a.ID == b.ID &&
		a.ContentType == b.ContentType && string(a.Body) == string(b.Body) &&
		a.Created.Equal(b.Created) && a.Updated.Equal(b.Updated) && a.Expires.Equal(b.Expires)
}

func TestConfig(t *testing.T) {
	bad := []Config{
		{MinExpires: -time.Second},
		{MinExpires: 1500 * time.Millisecond},
		{MinExpires: 2 * time.Hour},
		{DefaultExpires: 10 * time.Second},
		{MaxBody: 1 << 20, MaxBytes: 1 << 10},
		{CommitWindow: time.Second}, // answers late enough to be retransmitted
	}
	for _, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", cfg)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if _, err := New(Config{}, Env{}, map[string]Codec{"presence": nil}); err == nil {
		t.Error("New with a nil codec succeeded")
	}
	if err := (Config{CommitWindow: -1}).Validate(); err != nil {
		t.Errorf("commit_window off: %v", err)
	}
	if _, err := New(Config{}, Env{Callers: -1}, codecs()); err == nil {
		t.Error("New with negative Callers succeeded")
	}
}

// TestConcurrentSameETag: of many PUBLISHes naming one ETag at once,
// exactly one succeeds (RFC 3903 §6 step 6: the ETag is replaced), the
// others get 412.
func TestConcurrentSameETag(t *testing.T) {
	c := newClock()
	st := newMemStore()
	s := newState(t, Config{}, st, c)
	e := mustOK(t, s, initial(alice, "<presence/>", 3600)).ETag
	// Hold the first write until every other request has been answered.
	const n = 8
	release := make(chan struct{})
	var once sync.Once
	st.onWrite = func() { once.Do(func() { <-release }) }
	results := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- s.Publish(context.Background(), modify(alice, e, "<presence>"+string(rune('a'+i))+"</presence>", 3600)).Code
		}()
	}
	for range n - 1 {
		if code := <-results; code != 412 {
			t.Errorf("a concurrent PUBLISH got %d, want 412", code)
		}
	}
	close(release)
	wg.Wait()
	if code := <-results; code != 200 {
		t.Errorf("the first PUBLISH got %d, want 200", code)
	}
}
