package gctune

import (
	"runtime/debug"
	"testing"
	"time"
)

func TestChoose(t *testing.T) {
	cfg := Config{Headroom: 256 << 20, Min: 100, Max: 400}
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{16 << 20, 400},  // small heap: GC seldom
		{64 << 20, 400},  // 256/64 = 400%
		{128 << 20, 200}, // 256/128
		{256 << 20, 100}, // Go's default from here on
		{2 << 30, 100},   // a million bindings: no extra headroom
		{100 << 20, 256}, // in between, proportional
	} {
		if got := Choose(tc.live, cfg); got != tc.want {
			t.Errorf("Choose(%d MiB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

// The tuner sets GOGC from the live heap and gives the old value back.
func TestTunerSetsAndRestores(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	tu := Start(Config{Headroom: 1 << 40, Interval: time.Hour}) // any live heap is small next to 1 TiB
	if got := debug.SetGCPercent(-2); got != DefaultMax {       // -2 reads nothing useful; put it back at once
		t.Errorf("GOGC under the tuner = %d, want %d", got, DefaultMax)
	}
	debug.SetGCPercent(DefaultMax)
	if tu.Percent() != DefaultMax {
		t.Errorf("Percent = %d", tu.Percent())
	}
	tu.Stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC after Stop = %d, want 100", got)
	}
}
