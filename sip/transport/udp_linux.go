//go:build linux

package transport

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sizeReadBuffer asks for Config.ReadBuffer on l's socket: SO_RCVBUFFORCE
// first, which ignores net.core.rmem_max when the process has
// CAP_NET_ADMIN, else SO_RCVBUF, which the kernel caps at rmem_max.
func (m *Manager) sizeReadBuffer(l *udpListener) {
	want := m.cfg.ReadBuffer
	rc, err := l.pc.SyscallConn()
	if err != nil {
		m.log.Debug("udp receive buffer not set", "addr", l.addr.String(), "err", err)
		return
	}
	var forced bool
	var got int
	var setErr, getErr error
	cerr := rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, want) == nil {
			forced = true
		} else {
			setErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, want)
		}
		got, getErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if err := firstErr(cerr, setErr, getErr); err != nil {
		m.log.Debug("udp receive buffer not set", "addr", l.addr.String(), "requested", want, "err", err)
		return
	}
	// Linux reports twice what was granted: the other half is its
	// bookkeeping allowance (socket(7)).
	l.readBuffer = got / 2
	m.log.Debug("udp receive buffer", "addr", l.addr.String(), "requested", want,
		"obtained", l.readBuffer, "forced", forced, "capped", l.readBuffer < want)
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// mmsghdr is struct mmsghdr of recvmmsg(2), which x/sys/unix does not
// wrap. Go lays it out as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// datagramReader reads a UDP socket. On Linux, with a batch over 1, one
// recvmmsg fills up to batch slots per system call, through the socket's
// RawConn so that Go's poller still does the waiting; with 1 it reads one
// datagram at a time.
type datagramReader struct {
	pc    *net.UDPConn
	rc    syscall.RawConn // nil: single reads
	bufs  [][]byte        // one maxDatagram buffer per slot
	msgs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family
	// single read results, for batch 1
	n   int
	src netip.AddrPort
	// results of the last recvmmsg
	got   int
	errno unix.Errno
	recv  func(fd uintptr) bool // r.recvmmsg, bound once: a method value per read would allocate
	zones map[uint32]string     // interface names of IPv6 scope IDs seen
}

func newDatagramReader(pc *net.UDPConn, batch int) *datagramReader {
	r := &datagramReader{pc: pc}
	if batch > 1 {
		if rc, err := pc.SyscallConn(); err == nil {
			r.rc = rc
		}
	}
	if r.rc == nil {
		batch = 1
	}
	backing := make([]byte, batch*maxDatagram)
	r.bufs = make([][]byte, batch)
	for i := range r.bufs {
		r.bufs[i] = backing[i*maxDatagram : (i+1)*maxDatagram : (i+1)*maxDatagram]
	}
	if r.rc == nil {
		return r
	}
	r.msgs = make([]mmsghdr, batch)
	r.iovs = make([]unix.Iovec, batch)
	r.names = make([]unix.RawSockaddrInet6, batch)
	for i := range r.msgs {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(maxDatagram)
		h := &r.msgs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	r.recv = r.recvmmsg
	return r
}

// read waits for datagrams and returns how many it read; datagram(i)
// gives each. An error may come with none.
func (r *datagramReader) read() (int, error) {
	if r.rc == nil {
		n, src, err := r.pc.ReadFromUDPAddrPort(r.bufs[0])
		r.n, r.src = n, src
		if err != nil && n == 0 && !src.IsValid() {
			return 0, err
		}
		return 1, err
	}
	for i := range r.msgs {
		r.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		r.msgs[i].hdr.Flags = 0
	}
	if err := r.rc.Read(r.recv); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, r.errno
	}
	return r.got, nil
}

// recvmmsg is the RawConn read function: it reports false, to wait for
// the socket to become readable, only when nothing is waiting. The socket
// is non-blocking and MSG_DONTWAIT makes sure, so the call returns at once
// and goes through RawSyscall6 as media/plane's does.
func (r *datagramReader) recvmmsg(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.got, r.errno = int(n), e
		return true
	}
}

// datagram returns the i-th datagram of the last read and its source,
// not yet unmapped. b is valid until the next read.
func (r *datagramReader) datagram(i int) (b []byte, src netip.AddrPort) {
	if r.rc == nil {
		return r.bufs[0][:r.n], r.src
	}
	m := &r.msgs[i]
	return r.bufs[i][:min(int(m.n), maxDatagram)], r.source(&r.names[i], m.hdr.Namelen)
}

// source decodes the address recvmmsg wrote; an IPv6 scope ID becomes its
// interface's name as a zone, as net.UDPConn's reads give it.
func (r *datagramReader) source(sa *unix.RawSockaddrInet6, n uint32) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(r.zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, port)
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	return netip.AddrPort{}
}

// zone names the interface of a scope ID, or gives its number. Scope IDs
// come from the kernel (the receiving interface), so the cache stays as
// small as the host's interface list.
func (r *datagramReader) zone(id uint32) string {
	if z, ok := r.zones[id]; ok {
		return z
	}
	z := strconv.FormatUint(uint64(id), 10)
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		z = ifi.Name
	}
	if r.zones == nil {
		r.zones = make(map[uint32]string)
	}
	r.zones[id] = z
	return z
}
