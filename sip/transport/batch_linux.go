//go:build linux

package transport

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSys is what a Batch hands sendmmsg(2): one header, buffer
// descriptor and destination per slot, allocated once at the batch's
// full size and reused by every Flush.
type batchSys struct {
	msgs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family
}

// sendGroup sends items, all from l, in order: runs of them through
// sendRun (a single run unless some need the net package), the others
// through the net.UDPConn, as writeUDP does.
func (b *Batch) sendGroup(l *udpListener, items []int32) error {
	if l.raw == nil {
		return b.sendAllSlow(l, items)
	}
	s := &b.sys
	if s.msgs == nil {
		s.msgs = make([]mmsghdr, maxBatchDatagrams)
		s.iovs = make([]unix.Iovec, maxBatchDatagrams)
		s.names = make([]unix.RawSockaddrInet6, maxBatchDatagrams)
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
			h.Name = (*byte)(unsafe.Pointer(&s.names[k]))
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
// sendmmsg. When the kernel takes fewer, the datagram that stopped it is
// dealt with alone and a new sendmmsg takes the rest. That datagram goes
// through the net.UDPConn, which waits for room and reports its own
// failure, when the socket's buffer was full or others went before it
// (the kernel then reports no error); it is counted as failed when the
// call failed on it, the first. Once the socket is closed, the rest fail
// without being tried.
func (b *Batch) sendRun(l *udpListener, items []int32) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	msgs := b.sys.msgs[:len(items)]
	for len(items) > 0 {
		n, again, err := l.raw.sendmmsg(msgs)
		b.calls++
		for j, i := range items[:n] {
			it := &b.items[i]
			b.m.udpSent(l, it.remote, b.data(i), int(msgs[j].n))
		}
		rest := items[n:]
		switch {
		case len(rest) == 0:
			return first
		case err == nil || again:
			keep(b.sendSlow(l, rest[0]))
		case isClosed(err):
			keep(b.failAll(l, rest, err))
			return first
		default:
			keep(b.m.udpWriteFailed(l, b.items[rest[0]].remote, err))
		}
		items, msgs = rest[1:], msgs[n+1:]
	}
	return first
}
