package shard

import (
	"hash/fnv"
	"testing"
)

func TestOfIsFNV1a(t *testing.T) {
	for _, key := range []string{"", "a", "3f4f3334d76582a27117@127.0.0.1", "call-1@198.51.100.7"} {
		h := fnv.New32a()
		h.Write([]byte(key))
		for _, n := range []int{1, 7, 16} {
			if got, want := Of(key, n), int(h.Sum32()%uint32(n)); got != want {
				t.Errorf("Of(%q, %d) = %d, want %d", key, n, got, want)
			}
		}
	}
}

func TestOfAllocates(t *testing.T) {
	if a := testing.AllocsPerRun(100, func() { Of("3f4f3334d76582a27117@127.0.0.1", 8) }); a != 0 {
		t.Errorf("%v allocations per call", a)
	}
}
