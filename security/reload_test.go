package security

import (
	"net/netip"
	"testing"
	"time"
)

func TestTrustSetReplace(t *testing.T) {
	ts := NewTrustSet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	a, b := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.7")
	if !ts.Contains(a) || ts.Contains(b) {
		t.Fatal("initial set wrong")
	}
	if !ts.Contains(netip.MustParseAddr("::ffff:10.1.2.3")) {
		t.Error("an IPv4-mapped address is not matched as IPv4")
	}
	ts.Set([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	if ts.Contains(a) || !ts.Contains(b) {
		t.Error("Set did not replace the prefixes")
	}
	ts.Set(nil)
	if ts.Contains(b) {
		t.Error("an empty set trusts someone")
	}
}

func TestLimiterSetConfig(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l, err := NewLimiter(LimitsConfig{}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.7")
	if !l.Off() {
		t.Error("no limits, yet not Off")
	}
	if code, _ := l.Call("alice@example.test", src, "+4420", 5); code != 0 {
		t.Fatalf("unlimited call refused with %d", code)
	}
	// A costly rule with a budget, then one barring: the counts of the
	// first do not leak into the second (a different rule count).
	if err := l.SetConfig(LimitsConfig{Costly: []CostlyRule{{Prefixes: []string{"+44"}, PerHour: 1}}}); err != nil {
		t.Fatal(err)
	}
	if l.Off() {
		t.Error("limits set, yet Off")
	}
	if code, _ := l.Call("alice@example.test", src, "+4420", 0); code != 0 {
		t.Fatalf("first costly call refused with %d", code)
	}
	if code, _ := l.Call("alice@example.test", src, "+4421", 0); code != 403 {
		t.Fatalf("second costly call in the hour: %d, want 403", code)
	}
	if err := l.SetConfig(LimitsConfig{
		ConcurrentCalls: 2,
		Costly: []CostlyRule{
			{Prefixes: []string{"+1900"}, PerHour: 0},
			{Prefixes: []string{"+44"}, PerHour: 5},
		},
	}); err != nil {
		t.Fatal(err)
	}
	if code, _ := l.Call("alice@example.test", src, "+4422", 0); code != 0 {
		t.Errorf("costly call under the new budget refused with %d", code)
	}
	if code, _ := l.Call("alice@example.test", src, "+19005551", 0); code != 403 {
		t.Errorf("barred prefix: %d, want 403", code)
	}
	if code, _ := l.Call("alice@example.test", src, "100", 2); code != 486 {
		t.Errorf("third concurrent call: %d, want 486", code)
	}
	// An invalid configuration changes nothing.
	if err := l.SetConfig(LimitsConfig{CallsPerMinute: -1}); err == nil {
		t.Error("negative calls_per_minute accepted")
	}
	if got := l.Config().ConcurrentCalls; got != 2 {
		t.Errorf("after a failed SetConfig concurrent_calls is %d, want 2", got)
	}
}
