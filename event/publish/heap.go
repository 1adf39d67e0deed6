package publish

// expiryHeap is a min-heap of publications by expiry: Sweep pops what has
// lapsed in O(log n) each, with no timer per publication. Entries know
// their index so a refresh moves them in place.
type expiryHeap []*entry

func (h expiryHeap) less(i, j int) bool { return h[i].p.Expires.Before(h[j].p.Expires) }

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (h *expiryHeap) push(e *entry) {
	e.heapIdx = len(*h)
	*h = append(*h, e)
	h.up(e.heapIdx)
}

// pop removes and returns the entry that lapses first.
func (h *expiryHeap) pop() *entry {
	e := (*h)[0]
	h.remove(e)
	return e
}

// remove takes e out of the heap.
func (h *expiryHeap) remove(e *entry) {
	i, last := e.heapIdx, len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	if i != last {
		h.fixAt(i)
	}
	e.heapIdx = -1
}

// fix restores the order after e's expiry changed.
func (h expiryHeap) fix(e *entry) { h.fixAt(e.heapIdx) }

func (h expiryHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down sifts i towards the leaves and reports whether it moved.
func (h expiryHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}
