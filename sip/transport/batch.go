package transport

import (
	"errors"
	"net"
	"net/netip"
)

// A batch holds at most this many datagrams or, beyond one datagram, this
// many bytes of copies before it sends them: 64 is enough for the fan-out
// of one event (a presence change to its watchers) in one system call,
// and the byte bound keeps an idle Batch's arena small.
const (
	maxBatchDatagrams = 64
	maxBatchBytes     = 64 << 10
)

// Batch gathers UDP datagrams and sends them together, with one
// sendmmsg(2) per listener socket on Linux: a goroutine that sends a
// burst back to back (the NOTIFYs of one presence change) saves a system
// call and a receiver wake-up per datagram. Streams gain nothing from it
// (their writes are queued already), so they are written at once. A Batch
// serves one goroutine at a time: it reuses its buffers across Flushes
// instead of taking locks or allocating per datagram.
type Batch struct {
	m     *Manager
	arena []byte      // copies of the queued datagrams, back to back
	items []batchItem // queued datagrams in WriteTo order
	group []int32     // Flush's scratch: the items of one listener
	err   error       // the first error of an intermediate flush, for Flush
	calls int         // sendmmsg system calls made, for tests
	sys   batchSys    // the platform's send state
}

// batchItem is one queued datagram: where it goes and where its copy is.
type batchItem struct {
	l       *udpListener
	remote  netip.AddrPort
	off, n  int // its bytes are arena[off:off+n]
	grouped bool
}

// NewBatch returns an empty batch for one goroutine's sends (not safe for
// concurrent use). Its buffers grow with use and stay, so a goroutine
// that sends bursts should keep one Batch rather than make one per burst.
func (m *Manager) NewBatch() *Batch {
	return &Batch{m: m}
}

// WriteTo is Manager.WriteTo, deferred for UDP: data is copied (the caller
// may reuse it at once) and sent by Flush, or earlier when the batch is
// full. The listener is chosen now, so an invalid remote, a missing
// listener or a closed Manager is returned at once, as Manager.WriteTo
// returns it. Other protocols are written at once through
// Manager.WriteTo: a stream connection queues its writes already. An
// error of an intermediate flush is not this datagram's: Flush returns
// it.
func (b *Batch) WriteTo(proto string, local, remote netip.AddrPort, data []byte) error {
	p, err := normalizeProto(proto)
	if err != nil {
		return err
	}
	if p != UDP {
		return b.m.WriteTo(p, local, remote, data)
	}
	remote = unmap(remote)
	l, err := b.m.udpListenerFor(local, remote)
	if err != nil {
		return err
	}
	if len(b.items) > 0 && len(b.arena)+len(data) > maxBatchBytes {
		b.flushEarly()
	}
	b.items = append(b.items, batchItem{l: l, remote: remote, off: len(b.arena), n: len(data)})
	b.arena = append(b.arena, data...)
	if len(b.items) == maxBatchDatagrams {
		b.flushEarly()
	}
	return nil
}

// flushEarly sends a full batch and keeps its first error for Flush.
func (b *Batch) flushEarly() {
	if err := b.send(); err != nil && b.err == nil {
		b.err = err
	}
}

// Len returns the datagrams queued.
func (b *Batch) Len() int { return len(b.items) }

// Flush sends what is queued: one sendmmsg per listener socket, each
// socket's datagrams in WriteTo order. It returns the first error,
// including one of a flush WriteTo made early; every failed datagram is
// counted in Stats as Manager.WriteTo counts it. After Flush the batch is
// empty and reusable.
func (b *Batch) Flush() error {
	err := b.send()
	if b.err != nil {
		err, b.err = b.err, nil
	}
	return err
}

// send sends the queued datagrams, grouped by listener in the order the
// listeners first appear, and empties the batch.
func (b *Batch) send() error {
	if len(b.items) == 0 {
		return nil
	}
	defer b.reset()
	if b.m.udpClosed.Load() {
		// As writeUDP after Close: nothing sent, nothing counted.
		return ErrClosed
	}
	var first error
	for i := range b.items {
		if b.items[i].grouped {
			continue
		}
		l := b.items[i].l
		b.group = b.group[:0]
		for j := i; j < len(b.items); j++ {
			if it := &b.items[j]; !it.grouped && it.l == l {
				it.grouped = true
				b.group = append(b.group, int32(j))
			}
		}
		if err := b.sendGroup(l, b.group); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// reset empties the batch, keeping its buffers.
func (b *Batch) reset() {
	clear(b.items) // no listener kept alive by a batch at rest
	b.items = b.items[:0]
	b.arena = b.arena[:0]
}

// data returns the copy of item i.
func (b *Batch) data(i int32) []byte {
	it := &b.items[i]
	return b.arena[it.off : it.off+it.n : it.off+it.n]
}

// sendSlow sends item i as writeUDP does when the raw sender cannot:
// through the net.UDPConn, which waits for room in the socket's buffer.
func (b *Batch) sendSlow(l *udpListener, i int32) error {
	it, data := &b.items[i], b.data(i)
	n, err := l.pc.WriteToUDPAddrPort(data, it.remote)
	if err != nil {
		return b.m.udpWriteFailed(l, it.remote, err)
	}
	b.m.udpSent(l, it.remote, data, n)
	return nil
}

// sendAllSlow sends items one by one through the net.UDPConn and returns
// the first error.
func (b *Batch) sendAllSlow(l *udpListener, items []int32) error {
	var first error
	for _, i := range items {
		if err := b.sendSlow(l, i); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// failAll counts items as failed with err, without trying them: the
// socket is closing.
func (b *Batch) failAll(l *udpListener, items []int32, err error) error {
	var first error
	for _, i := range items {
		if e := b.m.udpWriteFailed(l, b.items[i].remote, err); first == nil {
			first = e
		}
	}
	return first
}

// isClosed reports whether err says the socket is closed, when sending
// the rest one by one would only fail the same way.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
