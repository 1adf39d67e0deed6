//go:build linux

package transport

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rmemMax reads net.core.rmem_max, what SO_RCVBUF is capped at.
func rmemMax(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReadBuffer: the UDP socket gets ReadBuffer, or, when the process
// may not force it, as much as net.core.rmem_max allows; what is recorded
// is what the socket has.
func TestReadBuffer(t *testing.T) {
	for _, want := range []int{DefaultReadBuffer, 3<<20 + 4096, 64 << 10} {
		cfg := Config{ReadBuffer: want}
		if want == DefaultReadBuffer {
			cfg.ReadBuffer = 0
		}
		m := newManager(t, cfg, nil)
		listen(t, m, UDP, "127.0.0.1")
		l := m.udpListeners()[0]
		rc, err := l.pc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var have int
		var gerr error
		if err := rc.Control(func(fd uintptr) { have, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		if l.readBuffer != have/2 {
			t.Fatalf("recorded %d, the socket has %d", l.readBuffer, have/2)
		}
		if max := rmemMax(t); l.readBuffer != want && !(want > max && l.readBuffer == max) {
			t.Fatalf("ReadBuffer %d: got %d (rmem_max %d): neither forced nor capped", want, l.readBuffer, max)
		}
	}
}

// TestDatagramSource: the addresses recvmmsg writes decode as
// ReadFromUDPAddrPort would give them (unmapping is readUDP's job), with
// a scope ID named after its interface.
func TestDatagramSource(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Fatal("no interfaces", err)
	}
	lo := ifs[0]
	v4 := func(a string, port uint16) (unix.RawSockaddrInet6, uint32) {
		var sa unix.RawSockaddrInet6
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family = unix.AF_INET
		sa4.Addr = netip.MustParseAddr(a).As4()
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], port)
		return sa, unix.SizeofSockaddrInet4
	}
	v6 := func(a string, port uint16, scope uint32) (unix.RawSockaddrInet6, uint32) {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr(a).As16(), Scope_id: scope}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
		return sa, unix.SizeofSockaddrInet6
	}
	type sourceCase struct {
		name string
		sa   unix.RawSockaddrInet6
		n    uint32
		want string // netip.AddrPort text; "invalid AddrPort" for none
	}
	var tests []sourceCase
	add := func(name string, sa unix.RawSockaddrInet6, n uint32, want string) {
		tests = append(tests, sourceCase{name, sa, n, want})
	}
	sa, n := v4("192.0.2.7", 5060)
	add("IPv4", sa, n, "192.0.2.7:5060")
	add("IPv4 short", sa, n-1, "invalid AddrPort")
	sa, n = v6("2001:db8::1", 5061, 0)
	add("IPv6", sa, n, "[2001:db8::1]:5061")
	add("IPv6 short", sa, n-1, "invalid AddrPort")
	sa, n = v6("::ffff:192.0.2.7", 5062, 0)
	add("IPv4-mapped", sa, n, "[::ffff:192.0.2.7]:5062")
	sa, n = v6("fe80::1", 5063, uint32(lo.Index))
	add("link-local with scope", sa, n, "[fe80::1%"+lo.Name+"]:5063")
	sa, n = v6("fe80::1", 5064, 1<<30)
	add("scope of no interface", sa, n, "[fe80::1%1073741824]:5064")
	add("unknown family", unix.RawSockaddrInet6{Family: unix.AF_UNIX}, unix.SizeofSockaddrInet6, "invalid AddrPort")

	r := &datagramReader{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.source(&tc.sa, tc.n).String(); got != tc.want {
				t.Fatalf("source = %s, want %s", got, tc.want)
			}
		})
	}
	if got := testing.AllocsPerRun(10, func() { sa, n := v6("fe80::1", 5063, uint32(lo.Index)); _ = r.source(&sa, n) }); got != 0 {
		t.Fatalf("a cached zone costs %v allocations", got)
	}
}

// TestRawSockaddr: the destination the raw sender writes for sendto and
// sendmmsg has the C layout of sockaddr_in or sockaddr_in6 (family in
// host order, port in network order, the address at its offset), reads
// back as the address it came from, and leaves nothing of an earlier,
// longer address behind in a reused buffer.
func TestRawSockaddr(t *testing.T) {
	v4 := &rawSender{domain: unix.AF_INET}
	v6 := &rawSender{domain: unix.AF_INET6}
	tests := []struct {
		name   string
		s      *rawSender
		to     string
		salen  uint32
		family uint16
		addr   []byte // at its offset: 4 in sockaddr_in, 8 in sockaddr_in6
		back   string // as source decodes it
	}{
		{"IPv4", v4, "192.0.2.7:5060", unix.SizeofSockaddrInet4, unix.AF_INET,
			[]byte{192, 0, 2, 7}, "192.0.2.7:5060"},
		{"IPv6", v6, "[2001:db8::1]:5061", unix.SizeofSockaddrInet6, unix.AF_INET6,
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "[2001:db8::1]:5061"},
		{"IPv4 from a dual-stack socket", v6, "192.0.2.7:65535", unix.SizeofSockaddrInet6, unix.AF_INET6,
			[]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7}, "[::ffff:192.0.2.7]:65535"},
	}
	// Filled with ones, as a longer address left in a reused slot would.
	var sa unix.RawSockaddrInet6
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range raw {
				raw[i] = 0xff
			}
			to := netip.MustParseAddrPort(tc.to)
			salen, again, err := tc.s.sockaddr(&sa, to)
			if salen != tc.salen || again || err != nil {
				t.Fatalf("sockaddr = %d, %v, %v; want %d", salen, again, err, tc.salen)
			}
			if f := binary.NativeEndian.Uint16(raw[0:2]); f != tc.family {
				t.Errorf("family %d, want %d", f, tc.family)
			}
			if p := binary.BigEndian.Uint16(raw[2:4]); p != to.Port() {
				t.Errorf("port %d in network order, want %d", p, to.Port())
			}
			off := 4
			if tc.family == unix.AF_INET6 {
				off = 8
			}
			if got := raw[off : off+len(tc.addr)]; !bytes.Equal(got, tc.addr) {
				t.Errorf("address bytes % x, want % x", got, tc.addr)
			}
			// The rest (sin_zero; flow info and scope ID; what lies past
			// a sockaddr_in) is zero.
			for i := range raw {
				if i < 4 || (i >= off && i < off+len(tc.addr)) || raw[i] == 0 {
					continue
				}
				t.Fatalf("byte %d is %#x, want 0: % x", i, raw[i], raw[:])
			}
			r := &datagramReader{}
			if got := r.source(&sa, salen).String(); got != tc.back {
				t.Errorf("reads back as %s, want %s", got, tc.back)
			}
		})
	}
	t.Run("zone", func(t *testing.T) {
		if _, again, err := v6.sockaddr(&sa, netip.MustParseAddrPort("[fe80::1%lo]:5060")); !again || err != nil {
			t.Errorf("a zoned address: again %v, %v; want the net package to send it", again, err)
		}
	})
	t.Run("IPv6 from an IPv4 socket", func(t *testing.T) {
		if _, again, err := v4.sockaddr(&sa, netip.MustParseAddrPort("[::1]:5060")); again || err == nil {
			t.Errorf("again %v, %v; want an error", again, err)
		}
	})
}

// FuzzDatagramSource: whatever the name buffer holds, decoding it neither
// panics nor invents an address for a family it does not know.
func FuzzDatagramSource(f *testing.F) {
	f.Add([]byte{unix.AF_INET, 0, 0x13, 0xc4, 192, 0, 2, 7}, uint32(unix.SizeofSockaddrInet4))
	f.Add([]byte{unix.AF_INET6, 0, 0x13, 0xc4}, uint32(unix.SizeofSockaddrInet6))
	f.Fuzz(func(t *testing.T, raw []byte, n uint32) {
		var sa unix.RawSockaddrInet6
		copy((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], raw)
		r := &datagramReader{}
		ap := r.source(&sa, n)
		if ap.IsValid() && sa.Family != unix.AF_INET && sa.Family != unix.AF_INET6 {
			t.Fatalf("family %d decoded as %s", sa.Family, ap)
		}
		if ap.IsValid() && binary.BigEndian.Uint16((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[2:4]) != ap.Port() {
			t.Fatalf("port %d, sockaddr says otherwise", ap.Port())
		}
	})
}
