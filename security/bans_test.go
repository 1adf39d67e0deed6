package security

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder records the callbacks of a Bans.
type recorder struct {
	mu             sync.Mutex
	added, expired []Ban
}

func (r *recorder) onAdd(b Ban) {
	r.mu.Lock()
	r.added = append(r.added, b)
	r.mu.Unlock()
}

func (r *recorder) onExpire(b Ban) {
	r.mu.Lock()
	r.expired = append(r.expired, b)
	r.mu.Unlock()
}

func (r *recorder) counts() (added, expired int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.added), len(r.expired)
}

func newTestBans(clk *fakeClock, max int) (*Bans, *recorder) {
	rec := &recorder{}
	return NewBans(BansConfig{Now: clk.Now, Max: max, OnAdd: rec.onAdd, OnExpire: rec.onExpire}), rec
}

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::1%eth0", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
		{"::1", "::"},
	} {
		if got := Key(addr(tc.in)); got != addr(tc.want) {
			t.Errorf("Key(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := Key(netip.Addr{}); got.IsValid() {
		t.Errorf("Key(zero) = %s, want the zero Addr", got)
	}
	// key16 agrees with Key, and IPv4 never meets an IPv6 /64.
	for _, s := range []string{"192.0.2.7", "::ffff:192.0.2.7", "2001:db8::1", "::"} {
		if key16(addr(s)) != key16(Key(addr(s))) {
			t.Errorf("key16(%s) differs from key16(Key(%s))", s, s)
		}
	}
	if key16(addr("0.0.0.0")) == key16(addr("::")) {
		t.Error("0.0.0.0 and ::/64 share a key")
	}
}

func TestBansAddExpire(t *testing.T) {
	clk := newClock()
	b, rec := newTestBans(clk, 0)
	ip := addr("198.51.100.9")
	if b.Banned(ip) {
		t.Fatal("banned with no bans")
	}
	now := clk.Now()
	if !b.Add(Ban{Prefix: prefix("198.51.100.9/32"), Reason: "test: x", Expires: now.Add(10 * time.Minute)}) {
		t.Fatal("Add of a new ban returned false")
	}
	if !b.Banned(ip) || !b.Banned(addr("::ffff:198.51.100.9")) {
		t.Fatal("not banned after Add")
	}
	if b.Banned(addr("198.51.100.10")) {
		t.Fatal("neighbour banned")
	}
	if l := b.List(); len(l) != 1 || !l[0].Created.Equal(now) || l[0].Reason != "test: x" {
		t.Fatalf("List = %+v", l)
	}
	clk.Add(10*time.Minute - time.Nanosecond)
	if !b.Banned(ip) {
		t.Fatal("ban lapsed early")
	}
	clk.Add(time.Nanosecond)
	if b.Banned(ip) {
		t.Fatal("still banned at expiry")
	}
	if len(b.List()) != 0 {
		t.Fatal("List shows an expired ban")
	}
	if b.Len() != 1 {
		t.Fatalf("Len before Sweep = %d, want 1 (not swept yet)", b.Len())
	}
	if n := b.Sweep(clk.Now()); n != 1 {
		t.Fatalf("Sweep = %d, want 1", n)
	}
	if b.Len() != 0 {
		t.Fatalf("Len after Sweep = %d", b.Len())
	}
	if a, e := rec.counts(); a != 1 || e != 1 {
		t.Fatalf("OnAdd %d, OnExpire %d; want 1, 1", a, e)
	}
	// Already expired, or invalid: not added.
	if b.Add(Ban{Prefix: prefix("198.51.100.9/32"), Expires: clk.Now()}) {
		t.Fatal("an expired ban was added")
	}
	if b.Add(Ban{}) {
		t.Fatal("a ban without prefix was added")
	}
}

func TestBansExtension(t *testing.T) {
	clk := newClock()
	b, rec := newTestBans(clk, 0)
	p := prefix("203.0.113.5/32")
	now := clk.Now()
	b.Add(Ban{Prefix: p, Reason: "flood: first", Expires: now.Add(time.Minute)})
	clk.Add(30 * time.Second)
	if b.Add(Ban{Prefix: p, Reason: "auth: second", Expires: clk.Now().Add(time.Minute)}) {
		t.Fatal("Add of a banned source returned true")
	}
	l := b.List()
	if len(l) != 1 || l[0].Reason != "flood: first" || !l[0].Created.Equal(now) || !l[0].Expires.Equal(now.Add(90*time.Second)) {
		t.Fatalf("after extension: %+v", l)
	}
	// An earlier expiry changes nothing and is not reported.
	b.Add(Ban{Prefix: p, Expires: now.Add(time.Minute)})
	if a, _ := rec.counts(); a != 2 {
		t.Fatalf("OnAdd called %d times, want 2 (new, extension)", a)
	}
	// Never expiring beats any expiry.
	b.Add(Ban{Prefix: p, Reason: "x"})
	if l := b.List(); !l[0].Expires.IsZero() {
		t.Fatalf("not made permanent: %+v", l[0])
	}
	clk.Add(24 * time.Hour)
	if !b.Banned(addr("203.0.113.5")) {
		t.Fatal("permanent ban lapsed")
	}
	// An expired ban not yet swept is replaced by a new one.
	q := prefix("203.0.113.6/32")
	b.Add(Ban{Prefix: q, Reason: "old", Expires: clk.Now().Add(time.Second)})
	clk.Add(2 * time.Second)
	if !b.Add(Ban{Prefix: q, Reason: "new", Expires: clk.Now().Add(time.Second)}) {
		t.Fatal("re-ban after expiry not reported as new")
	}
	for _, ban := range b.List() {
		if ban.Prefix == q && ban.Reason != "new" {
			t.Fatalf("re-ban kept the old reason: %+v", ban)
		}
	}
}

func TestBansPrefixes(t *testing.T) {
	clk := newClock()
	b, _ := newTestBans(clk, 0)
	exp := clk.Now().Add(time.Hour)
	b.Add(Ban{Prefix: prefix("2001:db8:aa:bb::/64"), Expires: exp})
	b.Add(Ban{Prefix: prefix("10.0.0.0/8"), Manual: true})
	b.Add(Ban{Prefix: prefix("2001:db8:cc::7/128"), Manual: true})
	b.Add(Ban{Prefix: prefix("::ffff:192.0.2.0/120"), Expires: exp})
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"2001:db8:aa:bb::1", true},
		{"2001:db8:aa:bb:ffff:ffff:ffff:ffff", true},
		{"2001:db8:aa:bb::1%eth0", true},
		{"2001:db8:aa:bc::1", false},
		{"10.200.3.4", true},
		{"::ffff:10.200.3.4", true},
		{"11.0.0.1", false},
		{"2001:db8:cc::7", true},
		{"2001:db8:cc::8", false},
		{"192.0.2.200", true},
		{"192.0.3.1", false},
	} {
		if got := b.Banned(addr(tc.ip)); got != tc.want {
			t.Errorf("Banned(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
	if b.Banned(netip.Addr{}) {
		t.Error("the zero Addr is banned")
	}
	if !b.Del(prefix("10.0.0.0/8")) || b.Banned(addr("10.1.1.1")) {
		t.Fatal("Del of a wide ban")
	}
	if b.Del(prefix("10.0.0.0/8")) {
		t.Fatal("Del of a lifted ban returned true")
	}
	if !b.Del(prefix("2001:db8:aa:bb::/64")) || b.Banned(addr("2001:db8:aa:bb::1")) {
		t.Fatal("Del of a /64")
	}
	// The IPv4-mapped form was stored as IPv4.
	if !b.Del(prefix("192.0.2.0/24")) {
		t.Fatal("Del of the unmapped form of a mapped prefix")
	}
	if b.Len() != 1 {
		t.Fatalf("Len = %d, want 1", b.Len())
	}
}

func TestBansEviction(t *testing.T) {
	clk := newClock()
	b, rec := newTestBans(clk, 3)
	exp := clk.Now().Add(time.Hour)
	b.Add(Ban{Prefix: prefix("192.0.2.1/32"), Manual: true})
	clk.Add(time.Second)
	b.Add(Ban{Prefix: prefix("192.0.2.2/32"), Expires: exp}) // oldest automatic
	clk.Add(time.Second)
	b.Add(Ban{Prefix: prefix("192.0.2.3/32"), Expires: exp})
	clk.Add(time.Second)
	if !b.Add(Ban{Prefix: prefix("192.0.2.4/32"), Expires: exp}) {
		t.Fatal("Add when full did not make room")
	}
	if b.Len() != 3 {
		t.Fatalf("Len = %d, want 3", b.Len())
	}
	if b.Banned(addr("192.0.2.2")) || !b.Banned(addr("192.0.2.1")) || !b.Banned(addr("192.0.2.3")) || !b.Banned(addr("192.0.2.4")) {
		t.Fatal("evicted the wrong ban")
	}
	if _, e := rec.counts(); e != 1 || rec.expired[0].Prefix != prefix("192.0.2.2/32") {
		t.Fatalf("OnExpire got %+v, want the evicted ban", rec.expired)
	}
	// Manual bans go beyond Max and are never evicted; automatic ones find
	// no room among manual ones.
	b.Add(Ban{Prefix: prefix("192.0.2.5/32"), Manual: true})
	b.Add(Ban{Prefix: prefix("192.0.2.6/32"), Manual: true})
	b.Add(Ban{Prefix: prefix("192.0.2.7/32"), Manual: true}) // evicts 3 then 4
	if b.Add(Ban{Prefix: prefix("192.0.2.8/32"), Expires: exp}) && b.Len() > 4 {
		t.Fatalf("Len = %d", b.Len())
	}
	for i := 9; i < 12; i++ {
		b.Add(Ban{Prefix: netip.PrefixFrom(addr(fmt.Sprintf("192.0.2.%d", i)), 32), Expires: exp})
	}
	for _, s := range []string{"192.0.2.1", "192.0.2.5", "192.0.2.6", "192.0.2.7"} {
		if !b.Banned(addr(s)) {
			t.Errorf("manual ban of %s evicted", s)
		}
	}
	manual := 0
	for _, ban := range b.List() {
		if ban.Manual {
			manual++
		} else {
			t.Errorf("automatic ban %s held beyond Max with %d manual", ban.Prefix, manual)
		}
	}
	// A manual Add over an automatic ban makes it manual: no longer evicted.
	b2, _ := newTestBans(clk, 2)
	b2.Add(Ban{Prefix: prefix("198.51.100.1/32"), Expires: exp})
	b2.Add(Ban{Prefix: prefix("198.51.100.1/32"), Manual: true, Expires: exp})
	clk.Add(time.Second)
	b2.Add(Ban{Prefix: prefix("198.51.100.2/32"), Expires: exp})
	clk.Add(time.Second)
	b2.Add(Ban{Prefix: prefix("198.51.100.3/32"), Expires: exp})
	if !b2.Banned(addr("198.51.100.1")) || b2.Banned(addr("198.51.100.2")) || !b2.Banned(addr("198.51.100.3")) {
		t.Fatalf("after upgrade to manual: %+v", b2.List())
	}
}

func TestBansList(t *testing.T) {
	clk := newClock()
	b, _ := newTestBans(clk, 0)
	start := clk.Now()
	for i, s := range []string{"192.0.2.3/32", "10.0.0.0/8", "2001:db8::/64", "192.0.2.1/32"} {
		b.Add(Ban{Prefix: prefix(s), Created: start.Add(time.Duration(4-i) * time.Second), Expires: start.Add(time.Duration(i+1) * time.Minute)})
	}
	clk.Add(time.Minute) // the first one lapses
	l := b.List()
	var got []string
	for _, ban := range l {
		got = append(got, ban.Prefix.String())
	}
	if want := "192.0.2.1/32 2001:db8::/64 10.0.0.0/8"; strings.Join(got, " ") != want {
		t.Fatalf("List = %v, want %s", got, want)
	}
}

func TestBansSync(t *testing.T) {
	clk := newClock()
	b, rec := newTestBans(clk, 0)
	now := clk.Now()
	exp := now.Add(time.Hour)
	pending := prefix("192.0.2.1/32")
	stored := prefix("192.0.2.2/32")
	b.Add(Ban{Prefix: pending, Reason: "flood: a", Expires: exp})
	b.Add(Ban{Prefix: stored, Reason: "flood: b", Expires: exp})
	b.MarkStored(stored)
	addedBefore, _ := rec.counts()

	// The operator deleted 192.0.2.2 and added 10.0.0.0/8 in the store.
	added, lifted := b.Sync([]Ban{{Prefix: prefix("10.0.0.0/8"), Reason: "manual", Manual: true, Created: now}})
	if a, _ := rec.counts(); a != addedBefore {
		t.Fatal("Sync called OnAdd")
	}
	// It tells what changed: the operator's ban, the one deleted.
	if len(added) != 1 || added[0].Prefix != prefix("10.0.0.0/8") || added[0].Reason != "manual" ||
		len(lifted) != 1 || lifted[0].Prefix != stored {
		t.Fatalf("Sync told added %+v, lifted %+v", added, lifted)
	}
	if !b.Banned(addr("10.9.9.9")) {
		t.Fatal("stored ban not picked up")
	}
	if b.Banned(addr("192.0.2.2")) {
		t.Fatal("ban deleted from the store still held")
	}
	if !b.Banned(addr("192.0.2.1")) {
		t.Fatal("ban pending persistence was dropped")
	}
	// Once written, it is the store's.
	b.MarkStored(pending)
	if added, lifted := b.Sync([]Ban{{Prefix: prefix("10.0.0.0/8"), Manual: true, Created: now}}); len(added) != 0 || len(lifted) != 1 {
		t.Fatalf("second Sync told added %+v, lifted %+v", added, lifted)
	}
	if b.Banned(addr("192.0.2.1")) {
		t.Fatal("stored ban absent from the store still held")
	}
	// The store's version of a ban wins when nothing is pending...
	b.Sync([]Ban{{Prefix: prefix("10.0.0.0/8"), Reason: "changed", Manual: true, Created: now, Expires: now.Add(time.Minute)}})
	if l := b.List(); len(l) != 1 || l[0].Reason != "changed" || !l[0].Expires.Equal(now.Add(time.Minute)) {
		t.Fatalf("after Sync update: %+v", l)
	}
	// ...but an extension not yet written is kept.
	b.Add(Ban{Prefix: prefix("10.0.0.0/8"), Expires: now.Add(time.Hour)})
	b.Sync([]Ban{{Prefix: prefix("10.0.0.0/8"), Reason: "changed", Manual: true, Created: now, Expires: now.Add(time.Minute)}})
	if l := b.List(); len(l) != 1 || !l[0].Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("pending extension lost: %+v", l)
	}
	// Expired bans in the store are not loaded.
	b.Sync([]Ban{{Prefix: prefix("10.0.0.0/8"), Manual: true}, {Prefix: prefix("198.51.100.1/32"), Expires: now}})
	if b.Banned(addr("198.51.100.1")) {
		t.Fatal("expired stored ban loaded")
	}
}

func TestBansLoad(t *testing.T) {
	clk := newClock()
	b, rec := newTestBans(clk, 0)
	now := clk.Now()
	n := b.Load([]Ban{
		{Prefix: prefix("192.0.2.1/32"), Reason: "auth: 5 failures in 1m0s", Created: now.Add(-time.Minute), Expires: now.Add(time.Hour)},
		{Prefix: prefix("192.0.2.2/32"), Expires: now.Add(-time.Second)},
		{Reason: "no prefix"},
	})
	if n != 1 || !b.Banned(addr("192.0.2.1")) || b.Banned(addr("192.0.2.2")) {
		t.Fatalf("Load = %d, bans %+v", n, b.List())
	}
	if a, _ := rec.counts(); a != 0 {
		t.Fatal("Load called OnAdd")
	}
	// Loaded bans are stored: a Sync without them lifts them.
	b.Sync(nil)
	if b.Len() != 0 {
		t.Fatal("Sync(nil) kept a loaded ban")
	}
}

func TestBansAmortisedSweep(t *testing.T) {
	clk := newClock()
	b, rec := newTestBans(clk, 0)
	b.Add(Ban{Prefix: prefix("192.0.2.1/32"), Expires: clk.Now().Add(time.Second)})
	clk.Add(bansSweepEvery)
	b.Add(Ban{Prefix: prefix("192.0.2.2/32"), Expires: clk.Now().Add(time.Second)})
	if _, e := rec.counts(); e != 1 || b.Len() != 1 {
		t.Fatalf("Add did not sweep: %d expired reported, Len %d", e, b.Len())
	}
}

func TestBanKind(t *testing.T) {
	for _, tc := range []struct {
		ban  Ban
		want string
	}{
		{Ban{Reason: "flood: 412 packets/s over udp"}, "flood"},
		{Ban{Reason: "scanner: user-agent \"x\""}, "scanner"},
		{Ban{Reason: "auth: 5 failures in 1m0s"}, "auth"},
		{Ban{Reason: "anything", Manual: true}, "manual"},
		{Ban{Reason: "just words: here"}, "other"},
		{Ban{}, "other"},
	} {
		if got := tc.ban.Kind(); got != tc.want {
			t.Errorf("Kind(%q) = %q, want %q", tc.ban.Reason, got, tc.want)
		}
	}
}

func TestBansConcurrent(t *testing.T) {
	clk := newClock()
	b, _ := newTestBans(clk, 50)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				ip := netip.AddrFrom4([4]byte{192, 0, byte(g), byte(i)})
				switch i % 5 {
				case 0:
					b.Add(Ban{Prefix: netip.PrefixFrom(ip, 32), Expires: clk.Now().Add(time.Minute)})
				case 1:
					b.Add(Ban{Prefix: netip.PrefixFrom(ip, 24), Manual: i%10 == 1, Expires: clk.Now().Add(time.Minute)})
				case 2:
					b.Del(netip.PrefixFrom(ip, 24))
				case 3:
					b.List()
					b.Sweep(clk.Now())
				default:
					b.Banned(ip)
				}
			}
		}()
	}
	wg.Wait()
	if b.Len() < 0 || b.Len() != len(b.List()) {
		t.Fatalf("Len %d, List %d", b.Len(), len(b.List()))
	}
}
