package transport

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestUDPWriteAddresses: datagrams leave through the listener's socket to
// each kind of address the socket can reach (what the raw sendto path
// writes as a sockaddr), arrive intact from the listener's address, and a
// write after Close fails with ErrClosed.
func TestUDPWriteAddresses(t *testing.T) {
	type tc struct {
		name, listen, sink string
	}
	cases := []tc{{"IPv4 socket to IPv4", "127.0.0.1", "127.0.0.1"}}
	if len(families(t)) == 2 {
		cases = append(cases,
			tc{"IPv6 socket to IPv6", "::1", "::1"},
			tc{"dual-stack socket to IPv4", "", "127.0.0.1"},
			tc{"dual-stack socket to IPv6", "", "::1"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := New(Config{}, newSink())
			local := listen(t, m, UDP, c.listen)
			sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(c.sink), 0)))
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			dst := unmap(sink.LocalAddr().(*net.UDPAddr).AddrPort())
			msg := []byte(invite10)
			if err := m.WriteTo(UDP, local, dst, msg); err != nil {
				t.Fatal(err)
			}
			_ = sink.SetReadDeadline(time.Now().Add(failsafe))
			buf := make([]byte, 2048)
			n, from, err := sink.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:n]) != invite10 {
				t.Fatalf("got %q, %v", buf[:n], err)
			}
			if from.Port() != local.Port() {
				t.Errorf("from %s, want the listener's port %d", from, local.Port())
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if err := m.WriteTo(UDP, local, dst, msg); !errors.Is(err, ErrClosed) {
				t.Errorf("write after Close: %v", err)
			}
		})
	}
}

// An IPv4 socket cannot send to an IPv6 address: an error, not a datagram
// to a garbled address.
func TestUDPWriteWrongFamily(t *testing.T) {
	m := newManager(t, Config{}, newSink())
	local := listen(t, m, UDP, "127.0.0.1")
	if err := m.WriteTo(UDP, local, netip.MustParseAddrPort("[::1]:5060"), []byte(invite10)); err == nil {
		t.Fatal("sent to IPv6 from an IPv4 socket")
	}
}
