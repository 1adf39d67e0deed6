//go:build linux

package transport

import "golang.org/x/sys/unix"

// batchSys is what a Batch hands sendmmsg(2): one header, buffer
// descriptor and destination per slot, allocated once at the batch's
// full size and reused by every Flush.
type batchSys struct {
	msgs  []mmsghdr
	iovs  []unix.Iovec
	names [][unix.SizeofSockaddrInet6]byte
}

// sendGroup sends items, all from l, in order: runs of them with one
// sendmmsg each (a single run unless some need the net package), the
// rest and whatever the kernel did not take through the net.UDPConn, as
// writeUDP does.
func (b *Batch) sendGroup(l *udpListener, items []int32) error {
	if l.raw == nil {
		return b.sendAllSlow(l, items)
	}
	s := &b.sys
	if s.msgs == nil {
		s.msgs = make([]mmsghdr, maxBatchDatagrams)
		s.iovs = make([]unix.Iovec, maxBatchDatagrams)
		s.names = make([][unix.SizeofSockaddrInet6]byte, maxBatchDatagrams)
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for len(items) > 0 {
		// A run: the datagrams up to the first the raw sender cannot take.
		k := 0
		var again bool
		var err error
		for k < len(items) {
			var salen uint32
			salen, again, err = l.raw.sockaddr(&s.names[k], b.items[items[k]].remote)
			if again || err != nil {
				break
			}
			data := b.data(items[k])
			iov := &s.iovs[k]
			*iov = unix.Iovec{}
			if len(data) > 0 {
				iov.Base = &data[0]
			}
			iov.SetLen(len(data))
			s.msgs[k] = mmsghdr{}
			h := &s.msgs[k].hdr
			h.Name = &s.names[k][0]
			h.Namelen = salen
			h.Iov = iov
			h.SetIovlen(1)
			k++
		}
		if k > 0 {
			keep(b.sendRun(l, items[:k]))
			items = items[k:]
			continue
		}
		// items[0] stopped the run at once.
		if again {
			keep(b.sendSlow(l, items[0]))
		} else {
			keep(b.m.udpWriteFailed(l, b.items[items[0]].remote, err))
		}
		items = items[1:]
	}
	return first
}

// sendRun sends items, whose headers fill b.sys.msgs[:len(items)], with
// one sendmmsg. If the kernel takes fewer (the socket's buffer filled,
// or a datagram failed), the rest go through the net.UDPConn, which
// waits for room and reports the failure of the one that stopped it.
func (b *Batch) sendRun(l *udpListener, items []int32) error {
	msgs := b.sys.msgs[:len(items)]
	n, again, err := l.raw.sendmmsg(msgs)
	b.calls++
	for j, i := range items[:n] {
		it := &b.items[i]
		b.m.udpSent(l, it.remote, b.data(i), int(msgs[j].n))
	}
	rest := items[n:]
	switch {
	case len(rest) == 0:
		return nil
	case err == nil || again:
		return b.sendAllSlow(l, rest)
	case isClosed(err):
		return b.failAll(l, rest, err)
	}
	// The error is the first datagram's alone: try the others.
	first := b.m.udpWriteFailed(l, b.items[rest[0]].remote, err)
	if err := b.sendAllSlow(l, rest[1:]); first == nil {
		first = err
	}
	return first
}
