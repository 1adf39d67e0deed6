//go:build linux

package transport

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSender sends datagrams with sendto(2) on the socket's descriptor
// directly. net.UDPConn's writes take the descriptor's write lock, which
// serialises every sender of a listener: the server's workers and its
// timer goroutine send on one socket at once, and each that finds the
// lock taken parks and has to be woken. The kernel takes concurrent
// sendto calls on one UDP socket without help; only the socket's close
// must not overlap a send (the descriptor number could be reused), which
// the read side of mu guards.
type rawSender struct {
	mu     sync.RWMutex
	fd     int
	domain int // unix.AF_INET or unix.AF_INET6
	closed bool
}

// newRawSender takes pc's descriptor; nil when it cannot (then writes go
// through pc).
func newRawSender(pc *net.UDPConn) *rawSender {
	rc, err := pc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &rawSender{fd: -1}
	var domErr error
	if err := rc.Control(func(fd uintptr) {
		s.fd = int(fd)
		s.domain, domErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || domErr != nil || s.fd < 0 {
		return nil
	}
	if s.domain != unix.AF_INET && s.domain != unix.AF_INET6 {
		return nil
	}
	return s
}

// close stops the sends before the socket closes.
func (s *rawSender) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// send sends b to to. again is true when the socket's buffer is full
// (EAGAIN: the descriptor is non-blocking) or the address needs what
// only the net package writes (an IPv6 zone): the caller then writes
// through the net.UDPConn, which waits.
func (s *rawSender) send(b []byte, to netip.AddrPort) (n int, again bool, err error) {
	var sa unix.RawSockaddrInet6
	salen, again, err := s.sockaddr(&sa, to)
	if again || err != nil {
		return 0, again, err
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	if !s.enter() {
		return 0, false, net.ErrClosed
	}
	// The conversions to uintptr stay in the call's own arguments (the
	// rule of unsafe.Pointer for system calls): sa is on this stack.
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(p), uintptr(len(b)), unix.MSG_DONTWAIT,
		uintptr(unsafe.Pointer(&sa)), uintptr(salen))
	s.mu.RUnlock()
	return sendResult("sendto", r, e)
}

// enter takes the close guard for a send: the descriptor cannot be
// closed (and its number reused) until the caller's RUnlock. False: the
// socket is closed, and the guard is not held.
func (s *rawSender) enter() bool {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return false
	}
	return true
}

// sendResult sorts a send system call's outcome: again for EAGAIN or
// EINTR (nothing went; the caller writes through the net.UDPConn), else
// the error named after the call. The calls are RawSyscall6 with
// MSG_DONTWAIT: they never sleep in the kernel, so the scheduler has
// nothing to hand off, and Syscall6's entry wakes the runtime's monitor
// thread (sysmon) whenever it sleeps because the process was idle, after
// which it polls every 20 µs for a while: on a server that idles between
// packets, a tenth of its CPU (BENCHMARKS.md, "the runtime's monitor").
func sendResult(name string, r uintptr, e syscall.Errno) (n int, again bool, err error) {
	switch e {
	case 0:
		return int(r), false, nil
	case unix.EAGAIN, unix.EINTR:
		return 0, true, nil
	}
	return 0, false, os.NewSyscallError(name, e)
}

// sockaddr writes to into sa as this socket's family wants it and returns
// its length, for send and for Batch's sendmmsg: a sockaddr_in in sa's
// first bytes for an IPv4 socket, else a sockaddr_in6. again and err are
// as send's: a zone needs the net package, another family is an error.
func (s *rawSender) sockaddr(sa *unix.RawSockaddrInet6, to netip.AddrPort) (salen uint32, again bool, err error) {
	ip := to.Addr()
	if ip.Zone() != "" {
		return 0, true, nil
	}
	*sa = unix.RawSockaddrInet6{} // Batch reuses sa: nothing left of an earlier address
	switch {
	case s.domain == unix.AF_INET && ip.Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		putPort(&sa4.Port, to.Port())
		sa4.Addr = ip.As4()
		return unix.SizeofSockaddrInet4, false, nil
	case s.domain == unix.AF_INET6:
		sa.Family = unix.AF_INET6
		putPort(&sa.Port, to.Port())
		sa.Addr = ip.As16() // an IPv4 address as ::ffff:a.b.c.d
		return unix.SizeofSockaddrInet6, false, nil
	}
	return 0, false, &net.AddrError{Err: "address family not reachable from this socket", Addr: ip.String()}
}

// putPort stores port in a sockaddr's port field, which holds it in
// network byte order whatever the host's.
func putPort(field *uint16, port uint16) {
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(field))[:], port)
}

// sendmmsg sends msgs with one sendmmsg(2) and returns how many went
// out; the kernel sets each one's n. Under the same close guard as send,
// so the descriptor cannot be closed (and reused) during the call.
// again: none went (EAGAIN or EINTR), the caller writes through the
// net.UDPConn. An error belongs to msgs[0], the kernel reports only a
// first message's failure: a later one ends the call early and shows as
// a count short of len(msgs).
func (s *rawSender) sendmmsg(msgs []mmsghdr) (n int, again bool, err error) {
	if len(msgs) == 0 {
		return 0, false, nil
	}
	if !s.enter() {
		return 0, false, net.ErrClosed
	}
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	s.mu.RUnlock()
	return sendResult("sendmmsg", r, e)
}
