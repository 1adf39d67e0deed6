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

// TakeInto hands out the same batches as Take, in order, reusing the
// arrays it is given back, and clears what they held.
func TestQueueTakeInto(t *testing.T) {
	q := New[*int](10, 2)
	vals := make([]int, 5)
	for i := range vals {
		vals[i] = i
		q.Push(&vals[i])
	}
	var got []int
	var buf []*int
	for {
		prev := buf
		buf = q.TakeInto(buf)
		if len(buf) == 0 {
			for _, p := range prev {
				if p != nil {
					t.Fatal("TakeInto left an item of the previous batch in its array")
				}
			}
			break
		}
		if len(buf) > 2 {
			t.Fatalf("batch of %d, want at most 2", len(buf))
		}
		for _, p := range buf {
			got = append(got, *p)
		}
	}
	if !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("took %v, want the items in order", got)
	}
	// The whole queue taken: the queue goes on in the array given back,
	// and the batch handed out is not touched by later pushes.
	q.Push(&vals[0])
	b1 := q.TakeInto(buf)
	q.Push(&vals[1])
	if len(b1) != 1 || *b1[0] != 0 {
		t.Fatalf("batch %v changed by a later Push", b1)
	}
	b2 := q.TakeInto(b1)
	if len(b2) != 1 || *b2[0] != 1 || q.Len() != 0 {
		t.Fatalf("second batch %v, %d left", b2, q.Len())
	}
	if testing.AllocsPerRun(100, func() {
		q.Push(&vals[2])
		b2 = q.TakeInto(b2)
	}) != 0 {
		t.Error("a steady stream of batches allocates")
	}
}

// PushQuiet is bounded like Push but leaves the writer asleep; Signal
// wakes it.
func TestQueuePushQuiet(t *testing.T) {
	q := New[int](2, 2)
	if !q.PushQuiet(1) || !q.PushQuiet(2) || q.PushQuiet(3) || q.Len() != 2 {
		t.Fatalf("PushQuiet past the bound, or refused below it (len %d)", q.Len())
	}
	select {
	case <-q.Wake():
		t.Fatal("PushQuiet woke the writer")
	default:
	}
	q.Signal()
	select {
	case <-q.Wake():
	default:
		t.Fatal("no wake-up after Signal")
	}
	q.Take()
	q.Close()
	if q.PushQuiet(4) {
		t.Fatal("PushQuiet after Close: want it refused")
	}
}
