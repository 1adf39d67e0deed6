package security

// ring keeps the times of the last n events, for the "n in window" rules:
// exact, and it grows only as far as events come.
type ring struct {
	t    []int64
	next int // when full, the oldest
}

// add records an event at now and reports whether the last n events,
// this one included, all fall within window.
func (r *ring) add(now int64, n int, window int64) bool {
	if n <= 0 {
		return false
	}
	if len(r.t) < n {
		r.t = append(r.t, now)
		return len(r.t) == n && now-r.t[0] <= window
	}
	r.t[r.next] = now
	r.next = (r.next + 1) % n
	return now-r.t[r.next] <= window
}

// full reports whether n events already fall within the window that ends
// at now, so that one more would be over a limit of n.
func (r *ring) full(now int64, n int, window int64) bool {
	return len(r.t) >= n && n > 0 && now-r.t[r.next] < window
}

// push records an event at now, keeping the last n.
func (r *ring) push(now int64, n int) {
	if len(r.t) < n {
		r.t = append(r.t, now)
		return
	}
	r.t[r.next] = now
	r.next = (r.next + 1) % n
}

func (r *ring) reset() {
	r.t, r.next = r.t[:0], 0
}
