//go:build !linux

package transport

// batchSys is empty: without sendmmsg a batch only defers its writes.
type batchSys struct{}

// sendGroup sends items, all from l, one write each, in order: without
// sendmmsg there is no system call to share.
func (b *Batch) sendGroup(l *udpListener, items []int32) error {
	return b.sendAllSlow(l, items)
}
