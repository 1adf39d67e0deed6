package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestBans(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { testBans(t, open(t)) })
	}
}

func testBans(t *testing.T, s Store) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	v0, err := s.BansVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	one := netip.MustParsePrefix("192.0.2.7/32")
	wide := netip.MustParsePrefix("2001:db8:1:2::/64")
	forever := netip.MustParsePrefix("198.51.100.0/24")
	err = s.PutBans(ctx, []Ban{
		{Prefix: one, Reason: "flood: 400 requests/s over udp", Created: now, Expires: now.Add(10 * time.Minute)},
		{Prefix: wide, Reason: "scanner user-agent", Created: now.Add(time.Second), Expires: now.Add(time.Minute)},
		{Prefix: forever, Reason: "operator", Created: now.Add(2 * time.Second), Manual: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := s.BansVersion(ctx)
	if err != nil || v1 == v0 {
		t.Fatalf("version after PutBans = %d, %v; was %d", v1, err, v0)
	}
	got, err := s.Bans(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Prefix != one || got[1].Prefix != wide || got[2].Prefix != forever {
		t.Fatalf("Bans = %+v", got)
	}
	if got[0].Reason != "flood: 400 requests/s over udp" || !got[0].Expires.Equal(now.Add(10*time.Minute)) || got[0].Manual {
		t.Errorf("first ban = %+v", got[0])
	}
	if !got[2].Expires.IsZero() || !got[2].Manual {
		t.Errorf("manual ban = %+v, want no expiry and manual", got[2])
	}
	// Two minutes later the /64 has lapsed: not listed, then purged
	// without a version change (no server holds a lapsed ban).
	later := now.Add(2 * time.Minute)
	if got, err = s.Bans(ctx, later); err != nil || len(got) != 2 {
		t.Fatalf("Bans(later) = %+v, %v", got, err)
	}
	if n, err := s.PurgeBans(ctx, later); err != nil || n != 1 {
		t.Fatalf("PurgeBans = %d, %v; want 1", n, err)
	}
	if v, _ := s.BansVersion(ctx); v != v1 {
		t.Errorf("purge changed the version")
	}
	// Replacing a ban keeps one row.
	if err := s.PutBans(ctx, []Ban{{Prefix: one, Reason: "auth failures", Created: later, Expires: later.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.Bans(ctx, later); len(got) != 2 || got[1].Reason != "auth failures" {
		t.Fatalf("after replace: %+v", got)
	}
	v2, _ := s.BansVersion(ctx)
	if err := s.DeleteBan(ctx, one); err != nil {
		t.Fatal(err)
	}
	if v3, _ := s.BansVersion(ctx); v3 == v2 {
		t.Error("DeleteBan did not change the version")
	}
	if err := s.DeleteBan(ctx, one); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteBan = %v, want ErrNotFound", err)
	}
	if got, _ = s.Bans(ctx, later); len(got) != 1 || got[0].Prefix != forever {
		t.Fatalf("after delete: %+v", got)
	}
	if err := s.PutBans(ctx, []Ban{{Reason: "no prefix"}}); err == nil {
		t.Error("PutBans accepted a ban without a prefix")
	}
}
