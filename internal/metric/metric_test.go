package metric

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Series appear when first counted, count into the vector's own series,
// and cost no allocation once resolved.
func TestLazyAndByCode(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"code"})
	byCode := NewByCode(vec)
	lazy := NewLazy(vec, "other")
	if n := testutil.CollectAndCount(vec); n != 0 {
		t.Fatalf("%d series before any count", n)
	}
	byCode.Inc(200)
	byCode.Inc(200)
	byCode.Inc(486)
	byCode.Inc(99) // outside 100-699: still counted
	byCode.Inc(700)
	lazy.Inc()
	for code, want := range map[string]float64{"200": 2, "486": 1, "99": 1, "700": 1, "other": 1} {
		if got := testutil.ToFloat64(vec.WithLabelValues(code)); got != want {
			t.Errorf("code %s: %v, want %v", code, got, want)
		}
	}
	if n := testutil.CollectAndCount(vec); n != 5 {
		t.Errorf("%d series, want 5", n)
	}
	if a := testing.AllocsPerRun(100, func() { byCode.Inc(200); lazy.Inc() }); a != 0 {
		t.Errorf("%v allocations per count", a)
	}
}
