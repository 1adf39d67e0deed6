package security

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func newTestLimiter(t *testing.T, clk *fakeClock, cfg LimitsConfig) *Limiter {
	t.Helper()
	l, err := NewLimiter(cfg, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLimiterNoLimits(t *testing.T) {
	l := newTestLimiter(t, newClock(), LimitsConfig{})
	for i := 0; i < 1000; i++ {
		if code, w := l.Call("alice", addr("192.0.2.1"), "+19005551234", 100); code != 0 {
			t.Fatalf("call refused without limits: %d %s", code, w)
		}
	}
	if len(l.m) != 0 {
		t.Fatal("counted calls with nothing to limit")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := newTestLimiter(t, newClock(), LimitsConfig{ConcurrentCalls: 2})
	src := addr("192.0.2.1")
	if code, _ := l.Call("alice", src, "100", 1); code != 0 {
		t.Fatal("second call refused")
	}
	code, w := l.Call("alice", src, "100", 2)
	if code != 486 || !strings.Contains(w, "limit 2") {
		t.Fatalf("third call: %d %q, want 486", code, w)
	}
	// Unauthenticated calls have no user to count against.
	if code, _ := l.Call("", src, "100", 5); code != 0 {
		t.Fatal("unauthenticated call refused for concurrency")
	}
	if l.Stats().Concurrent != 1 {
		t.Fatalf("stats = %+v", l.Stats())
	}
}

func TestLimiterPerMinute(t *testing.T) {
	clk := newClock()
	l := newTestLimiter(t, clk, LimitsConfig{CallsPerMinute: 3})
	src := addr("192.0.2.1")
	for i := 0; i < 3; i++ {
		if code, _ := l.Call("alice", src, "100", 0); code != 0 {
			t.Fatalf("call %d refused", i+1)
		}
		clk.Add(10 * time.Second)
	}
	// Refused calls are not counted: hammering does not push the window.
	for i := 0; i < 10; i++ {
		if code, w := l.Call("alice", src, "100", 0); code != 403 || !strings.Contains(w, "3 a minute") {
			t.Fatalf("fourth call: %d %q, want 403", code, w)
		}
	}
	if code, _ := l.Call("bob", src, "100", 0); code != 0 {
		t.Fatal("bob refused for alice's calls")
	}
	clk.Add(30 * time.Second) // a minute after the first call
	if code, _ := l.Call("alice", src, "100", 0); code != 0 {
		t.Fatal("refused a minute after the first call")
	}
	if code, _ := l.Call("alice", src, "100", 0); code != 403 {
		t.Fatal("allowed a fourth call within a minute")
	}
	if l.Stats().Rate != 11 {
		t.Fatalf("stats = %+v", l.Stats())
	}
}

func TestLimiterPerSource(t *testing.T) {
	clk := newClock()
	l := newTestLimiter(t, clk, LimitsConfig{SourceCallsPerMinute: 2})
	src := addr("2001:db8:1::1")
	l.Call("", src, "alice", 0)
	l.Call("", addr("2001:db8:1::2"), "alice", 0) // same /64
	code, w := l.Call("", src, "alice", 0)
	if code != 403 || !strings.Contains(w, "address") {
		t.Fatalf("third unauthenticated call: %d %q", code, w)
	}
	if code, _ := l.Call("", addr("2001:db8:2::1"), "alice", 0); code != 0 {
		t.Fatal("another /64 refused")
	}
	// Authenticated calls from the same address are the users' business.
	for i := 0; i < 10; i++ {
		if code, _ := l.Call(fmt.Sprint("user", i), src, "100", 0); code != 0 {
			t.Fatal("authenticated call refused by the source limit")
		}
	}
	if l.Stats().SourceRate != 1 {
		t.Fatalf("stats = %+v", l.Stats())
	}
}

func TestLimiterCostly(t *testing.T) {
	clk := newClock()
	l := newTestLimiter(t, clk, LimitsConfig{Costly: []CostlyRule{
		{Prefixes: []string{"+1900", "00"}, PerHour: 2},
		{Prefixes: []string{"+882", "+881"}}, // barred
	}})
	src := addr("192.0.2.1")
	for _, n := range []string{"+1 900 555-1234", "0044123456"} {
		if code, w := l.Call("alice", src, n, 0); code != 0 {
			t.Fatalf("call to %s refused: %s", n, w)
		}
	}
	for _, n := range []string{"+1(900)5550000", "%2B19005550000;phone-context=x", "00.1.555"} {
		code, w := l.Call("alice", src, n, 0)
		if code != 403 || w != "calls to +1900, 00 limited (2 an hour)" {
			t.Fatalf("call to %s: %d %q", n, code, w)
		}
	}
	// Not costly, another user, or not a number: not limited.
	for _, tc := range []struct{ user, num string }{
		{"alice", "+420123456"}, {"alice", "100"}, {"bob", "+19005551234"}, {"alice", "user1900"}, {"alice", "*1900"},
	} {
		if code, w := l.Call(tc.user, src, tc.num, 0); code != 0 {
			t.Fatalf("%s calling %s refused: %s", tc.user, tc.num, w)
		}
	}
	code, w := l.Call("alice", src, "+88216", 0)
	if code != 403 || w != "calls to +882 are barred" {
		t.Fatalf("barred: %d %q", code, w)
	}
	clk.Add(time.Hour)
	if code, _ := l.Call("alice", src, "+19005551234", 0); code != 0 {
		t.Fatal("refused an hour later")
	}
	// Unauthenticated costly calls count per source.
	l.Call("", src, "001", 0)
	l.Call("", src, "001", 0)
	if code, _ := l.Call("", src, "001", 0); code != 403 {
		t.Fatal("unauthenticated costly calls not limited")
	}
	if l.Stats().Costly != 5 {
		t.Fatalf("stats = %+v", l.Stats())
	}
}

func TestLimiterBounded(t *testing.T) {
	clk := newClock()
	l := newTestLimiter(t, clk, LimitsConfig{CallsPerMinute: 5, SourceCallsPerMinute: 5, MaxTracked: 10})
	for i := 0; i < 1000; i++ {
		l.Call(fmt.Sprint("u", i), addr("192.0.2.1"), "1", 0)
		l.Call("", netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "1", 0)
		if len(l.m) > 10 {
			t.Fatalf("%d tracked, bound 10", len(l.m))
		}
	}
	clk.Add(2 * time.Minute)
	l.Call("x", addr("192.0.2.1"), "1", 0)
	if len(l.m) != 1 {
		t.Fatalf("%d tracked after a quiet spell, want 1", len(l.m))
	}
}

func TestNormInto(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"+420 123 456 789", "+420123456789", true},
		{"+1-(900)-555.1234", "+19005551234", true},
		{"%2b44;phone-context=+44", "+44", true},
		{"0044", "0044", true},
		{"", "", true},
		{"alice", "", false},
		{"12+3", "12", false},
		{"*21#", "", false},
		{"1%2B", "1", false},
		{strings.Repeat("1", 100), strings.Repeat("1", maxNumberLen), true},
	} {
		got, ok := normInto(nil, tc.in)
		if string(got) != tc.want || ok != tc.ok {
			t.Errorf("normInto(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzNormInto(f *testing.F) {
	for _, s := range []string{"+420 123", "%2B1", "00;x", "abc", "+", "%2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var buf [maxNumberLen]byte
		got, _ := normInto(buf[:0], s)
		if len(got) > maxNumberLen {
			t.Fatalf("%d bytes", len(got))
		}
		for i, c := range got {
			if !('0' <= c && c <= '9' || c == '+' && i == 0) {
				t.Fatalf("normInto(%q) = %q", s, got)
			}
		}
		// Normal form is a fixed point.
		again, ok := normInto(nil, string(got))
		if !ok || string(again) != string(got) {
			t.Fatalf("normInto(%q) = %q, then %q", s, got, again)
		}
	})
}
