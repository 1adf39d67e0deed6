package main

import (
	"testing"
	"time"
)

// FuzzParseWhen feeds --since/--until values: a value either fails or
// gives the time it says, one the store's filter can hold (a zero time
// would mean "no bound" and silently drop the filter).
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"", "2025-01-02", "2025-01-02T15:04:05Z", "2025-01-02T15:04:05+01:00", "1h", "30m", "0s",
		"-1h", "1h30m", "2562047h", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "0001-01-01", "1969-12-31",
		"2025-02-30", "yesterday", "1e3h", ".5h"} {
		f.Add(s)
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWhen(s, now)
		if err != nil {
			if s == "" {
				t.Fatalf("empty value: %v", err)
			}
			return
		}
		if s == "" {
			if !got.IsZero() {
				t.Fatalf("empty value gives %v", got)
			}
			return
		}
		if got.IsZero() || got.Before(time.Unix(0, 0)) {
			t.Fatalf("%q gives %v: no bound the store can hold", s, got)
		}
		epoch := time.Unix(0, 0)
		if d, err := time.ParseDuration(s); err == nil {
			if want := now.Add(-d); !got.Equal(want) && !(want.Before(epoch) && got.Equal(epoch)) {
				t.Fatalf("%q gives %v, want %v", s, got, want)
			}
		}
		if want, err := time.Parse(time.RFC3339, s); err == nil && !got.Equal(want) && !(want.Before(epoch) && got.Equal(epoch)) {
			t.Fatalf("%q gives %v, want %v", s, got, want)
		}
	})
}
