package batch

import (
	"slices"
	"sync"
	"testing"
)

func TestQueue(t *testing.T) {
	q := New[int](5, 2)
	for i := range 5 {
		if !q.Push(i) {
			t.Fatalf("Push(%d) refused below the bound", i)
		}
	}
	if q.Push(5) || !q.Full() || q.Len() != 5 {
		t.Fatalf("a sixth item was taken, or Full/Len wrong (len %d)", q.Len())
	}
	select {
	case <-q.Wake():
	default:
		t.Fatal("no wake-up after Push")
	}
	var got []int
	for b := q.Take(); b != nil; b = q.Take() {
		if len(b) > 2 {
			t.Fatalf("batch of %d, want at most 2", len(b))
		}
		got = append(got, b...)
	}
	if !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("took %v, want the items in order", got)
	}
	if !q.Push(9) || !q.Close() || q.Close() || !q.Closed() || q.Push(10) || !q.Full() {
		t.Fatal("Close: want the first call to close, later pushes refused")
	}
	if b := q.Take(); !slices.Equal(b, []int{9}) {
		t.Fatalf("after Close took %v, want what was queued before", b)
	}
}

func TestQueueConcurrent(t *testing.T) {
	q := New[int](1000, 64)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 250 {
				q.Push(p*1000 + i)
			}
		}()
	}
	wg.Wait()
	n := 0
	for b := q.Take(); b != nil; b = q.Take() {
		n += len(b)
	}
	if n != 1000 {
		t.Fatalf("took %d items, want 1000", n)
	}
}

// PushUnbounded keeps its item's place in the order past the bound, and
// is refused only once the queue is closed.
func TestQueuePushUnbounded(t *testing.T) {
	q := New[int](2, 10)
	if !q.Push(0) || !q.Push(1) || q.Push(2) {
		t.Fatal("Push: want two items taken, the third refused")
	}
	<-q.Wake()
	if !q.PushUnbounded(3) || q.Len() != 3 || !q.Full() || q.Push(4) {
		t.Fatalf("PushUnbounded on a full queue: len %d", q.Len())
	}
	select {
	case <-q.Wake():
	default:
		t.Fatal("no wake-up after PushUnbounded")
	}
	if b := q.Take(); !slices.Equal(b, []int{0, 1, 3}) {
		t.Fatalf("took %v, want [0 1 3]", b)
	}
	q.Close()
	if q.PushUnbounded(5) || q.Len() != 0 {
		t.Fatal("PushUnbounded after Close: want it refused")
	}
}
