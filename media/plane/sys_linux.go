//go:build linux

package plane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of recvmmsg(2)/sendmmsg(2): x/sys/unix has
// no wrapper for either, and golang.org/x/net/ipv4's batch reads need a
// net.PacketConn, that is Go's own poller, which this package replaces
// with its epoll sets. Go pads the struct to Msghdr's alignment as C does
// (64 bytes on 64-bit platforms, 32 on 32-bit ones).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// recvmmsg reads up to len(msgs) datagrams without blocking. The socket
// is non-blocking and the call returns at once, so it goes through
// RawSyscall6 and skips the scheduler hand-off of Syscall6.
func recvmmsg(fd int, msgs []mmsghdr) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// sendmmsg sends msgs without blocking and returns how many went out;
// the first that failed (if any) is at the returned index.
func sendmmsg(fd int, msgs []mmsghdr) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// sockaddrLen is the size of the name buffers: a sockaddr_in6 holds
// either family.
const sockaddrLen = unix.SizeofSockaddrInet6

// fromSockaddr reads the source address recvmmsg wrote, unmapping
// IPv4-mapped IPv6 ones (a dual-stack socket's IPv4 peers) so that they
// compare equal to the addresses SDP names. Scope IDs are dropped.
func fromSockaddr(sa *unix.RawSockaddrInet6, n uint32) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port), true
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port), true
	}
	return netip.AddrPort{}, false
}

// toSockaddr writes ap as a destination for a socket of the family v6
// says and returns its length; 0 if that socket cannot reach ap (IPv6
// from an IPv4 socket). An IPv6 socket reaches IPv4 peers by their
// mapped address (when it is dual-stack).
func toSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	if v6 {
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		return unix.SizeofSockaddrInet6
	}
	if !a.Is4() {
		return 0
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
	return unix.SizeofSockaddrInet4
}

// openUDP binds a non-blocking UDP socket to addr:port. The unspecified
// IPv6 address is bound dual-stack, so its leg can also face IPv4
// parties.
func openUDP(addr netip.Addr, port int) (int, error) {
	family := unix.AF_INET
	if addr.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, err
	}
	var sa unix.Sockaddr
	if addr.Is6() {
		if addr.IsUnspecified() {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				unix.Close(fd)
				return -1, err
			}
		}
		sa6 := &unix.SockaddrInet6{Port: port, Addr: addr.As16()}
		if z := addr.Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				unix.Close(fd)
				return -1, err
			}
			sa6.ZoneId = uint32(ifi.Index)
		}
		sa = sa6
	} else {
		sa = &unix.SockaddrInet4{Port: port, Addr: addr.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
