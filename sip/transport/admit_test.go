package transport

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// admitList is a Config.Admit refusing a set of sources and recording
// what it was asked.
type admitList struct {
	mu      sync.Mutex
	refused map[netip.AddrPort]bool
	asked   []string
}

func newAdmitList(refused ...netip.AddrPort) *admitList {
	a := &admitList{refused: make(map[netip.AddrPort]bool)}
	for _, r := range refused {
		a.refused[r] = true
	}
	return a
}

func (a *admitList) admit(proto string, remote netip.AddrPort) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, proto+" "+remote.String())
	return !a.refused[remote]
}

func (a *admitList) calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.asked...)
}

// stunBinding is an RFC 8489 Binding request (header only).
func stunBinding() []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:2], 0x0001)
	binary.BigEndian.PutUint32(b[4:8], stunCookie)
	copy(b[8:], "transactid12")
	return b
}

// TestAdmitUDP: Admit sees every datagram from its unmapped source before
// the keep-alive and STUN checks; what it refuses is counted and nothing
// else happens to it, and the other sources' datagrams go on, in single
// and in batched reads, on family sockets and on a dual-stack one.
func TestAdmitUDP(t *testing.T) {
	hosts := []string{""} // dual-stack: IPv4 sources arrive mapped
	for _, fam := range families(t) {
		hosts = append(hosts, fam.host)
	}
	for _, batch := range []int{1, DefaultReadBatch} {
		for _, host := range hosts {
			t.Run(fmt.Sprintf("batch=%d/host=%q", batch, host), func(t *testing.T) {
				clientHost := host
				if host == "" {
					clientHost = "127.0.0.1"
				}
				bad, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(clientHost), 0)))
				if err != nil {
					t.Fatal(err)
				}
				defer bad.Close()
				good, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(clientHost), 0)))
				if err != nil {
					t.Fatal(err)
				}
				defer good.Close()
				badAddr, goodAddr := addrPortOf(bad.LocalAddr()), addrPortOf(good.LocalAddr())

				al := newAdmitList(badAddr)
				var stunCalls atomic.Int32
				h := newSink()
				m := newManager(t, Config{
					ReadBatch: batch,
					Admit:     al.admit,
					STUN: func(dst, req []byte, local, remote netip.AddrPort) []byte {
						stunCalls.Add(1)
						return dst
					},
				}, h)
				addr := listen(t, m, UDP, host)
				to := netip.AddrPortFrom(netip.MustParseAddr(clientHost), addr.Port())

				refusedData := [][]byte{[]byte(options0), []byte("\r\n\r\n"), stunBinding(), {}, []byte(invite10)}
				var refusedBytes int
				for _, d := range refusedData {
					refusedBytes += len(d)
					if _, err := bad.WriteToUDPAddrPort(d, to); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := good.WriteToUDPAddrPort([]byte(invite10), to); err != nil {
					t.Fatal(err)
				}
				p := h.next(t)
				if string(p.Data) != invite10 || p.Remote != goodAddr {
					t.Fatalf("packet %q from %s, want the INVITE from %s", p.Data, p.Remote, goodAddr)
				}
				// Loopback delivers in order and one goroutine reads, so
				// everything bad sent was read before good's INVITE.
				s := m.Stats().UDP
				if s.Dropped != uint64(len(refusedData)) || s.PacketsIn != 1 || s.Keepalives != 0 || s.STUNIn != 0 || stunCalls.Load() != 0 {
					t.Fatalf("stats %+v, STUN called %d times; want %d dropped, 1 in, no keep-alive or STUN", s, stunCalls.Load(), len(refusedData))
				}
				if s.BytesIn != uint64(refusedBytes+len(invite10)) {
					t.Fatalf("BytesIn %d, want %d", s.BytesIn, refusedBytes+len(invite10))
				}
				var want []string
				for range refusedData {
					want = append(want, "UDP "+badAddr.String())
				}
				want = append(want, "UDP "+goodAddr.String())
				if got := al.calls(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("Admit asked %v, want %v", got, want)
				}
				select {
				case p := <-h:
					t.Fatalf("unexpected packet %q from %s", p.Data, p.Remote)
				default:
				}
			})
		}
	}
}

// TestAdmitStreamAccept: a connection Admit refuses is closed before it
// is registered or its TLS handshake begins, and counted.
func TestAdmitStreamAccept(t *testing.T) {
	serverTLS, _ := testTLS(t)
	for _, proto := range []string{TCP, TLS} {
		t.Run(proto, func(t *testing.T) {
			var asked atomic.Int32
			h := newSink()
			m := newManager(t, Config{TLSConfig: serverTLS, Admit: func(p string, remote netip.AddrPort) bool {
				asked.Add(1)
				if p != proto || !remote.Addr().Is4() {
					t.Errorf("Admit(%q, %s)", p, remote)
				}
				return false
			}}, h)
			addr := listen(t, m, proto, "127.0.0.1")
			c := dialClient(t, TCP, addr, nil) // the TLS side never gets to a handshake
			if _, err := c.Write([]byte(options0)); err != nil {
				t.Fatal(err)
			}
			// A reset is fine too: what matters is that nothing comes back.
			if n, _ := io.Copy(io.Discard, c); n != 0 {
				t.Fatalf("read %d bytes from a refused connection", n)
			}
			waitFor(t, "the refusal", func() bool { return protoStats(m.Stats(), proto).ConnsDropped == 1 })
			s := protoStats(m.Stats(), proto)
			if s.ConnsAccepted != 0 || s.ConnsOpen != 0 || s.HandshakeErrors != 0 || s.PacketsIn != 0 || asked.Load() != 1 {
				t.Fatalf("stats %+v, Admit asked %d times", s, asked.Load())
			}
			if m.Lookup(proto, addrPortOf(c.LocalAddr())) != nil {
				t.Fatal("refused connection in the table")
			}
			select {
			case p := <-h:
				t.Fatalf("unexpected packet %q", p.Data)
			default:
			}
		})
	}
}

// TestAdmitStreamFrame: once Admit refuses a source (a ban arriving while
// its connection is open), its next frame, even a keep-alive, is dropped
// and the connection closed.
func TestAdmitStreamFrame(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	for _, proto := range []string{TCP, TLS} {
		for _, next := range []struct{ name, data string }{{"message", options0}, {"ping", "\r\n\r\n"}} {
			t.Run(proto+"/"+next.name, func(t *testing.T) {
				var banned atomic.Bool
				var asked atomic.Int32
				h := newSink()
				m := newManager(t, Config{TLSConfig: serverTLS, Admit: func(string, netip.AddrPort) bool {
					asked.Add(1)
					return !banned.Load()
				}}, h)
				addr := listen(t, m, proto, "127.0.0.1")
				c := dialClient(t, proto, addr, clientTLS)
				if _, err := c.Write([]byte(invite10)); err != nil {
					t.Fatal(err)
				}
				p := h.next(t)
				if string(p.Data) != invite10 {
					t.Fatalf("packet %q", p.Data)
				}
				banned.Store(true)
				if _, err := c.Write([]byte(next.data)); err != nil {
					t.Fatal(err)
				}
				if n, _ := io.Copy(io.Discard, c); n != 0 {
					t.Fatalf("read %d bytes after the refusal, want none (no pong, no reply)", n)
				}
				waitFor(t, "the close", func() bool { return protoStats(m.Stats(), proto).ConnsOpen == 0 })
				s := protoStats(m.Stats(), proto)
				// Asked at accept, for the INVITE, for the refused frame.
				if s.Dropped != 1 || s.ConnsDropped != 1 || s.PacketsIn != 1 || s.Keepalives != 0 || asked.Load() != 3 {
					t.Fatalf("stats %+v, Admit asked %d times", s, asked.Load())
				}
				select {
				case p := <-h:
					t.Fatalf("unexpected packet %q", p.Data)
				default:
				}
			})
		}
	}
}

// TestAdmitDialedConn: messages arriving on a connection we dialed pass
// Admit too.
func TestAdmitDialedConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	al := newAdmitList(addrPortOf(ln.Addr()))
	m := newManager(t, Config{Admit: al.admit}, newSink())
	c, err := m.Dial(t.Context(), TCP, netip.AddrPort{}, addrPortOf(ln.Addr()), "")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.Write([]byte(options0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(failsafe):
		t.Fatal("the connection stayed open")
	}
	if s := m.Stats().TCP; s.Dropped != 1 || s.ConnsDropped != 1 || s.PacketsIn != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestAdmitMetrics: refusals are exported with a reason label.
func TestAdmitMetrics(t *testing.T) {
	m := newManager(t, Config{Admit: func(string, netip.AddrPort) bool { return false }}, nil)
	addr := listen(t, m, UDP, "127.0.0.1")
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if _, err := c.Write([]byte(options0)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the refusals", func() bool { return m.Stats().UDP.Dropped == 3 })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	const want = `
# HELP hlas_transport_packets_dropped_total Datagrams and stream frames dropped unread, by reason (admit: refused by the admission check, such as a flood guard's ban).
# TYPE hlas_transport_packets_dropped_total counter
hlas_transport_packets_dropped_total{proto="TCP",reason="admit"} 0
hlas_transport_packets_dropped_total{proto="TLS",reason="admit"} 0
hlas_transport_packets_dropped_total{proto="UDP",reason="admit"} 3
hlas_transport_packets_dropped_total{proto="WS",reason="admit"} 0
hlas_transport_packets_dropped_total{proto="WSS",reason="admit"} 0
# HELP hlas_transport_connections_dropped_total Stream connections closed, by reason (admit: refused by the admission check when accepted or on a frame).
# TYPE hlas_transport_connections_dropped_total counter
hlas_transport_connections_dropped_total{proto="TCP",reason="admit"} 0
hlas_transport_connections_dropped_total{proto="TLS",reason="admit"} 0
hlas_transport_connections_dropped_total{proto="WS",reason="admit"} 0
hlas_transport_connections_dropped_total{proto="WSS",reason="admit"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"hlas_transport_packets_dropped_total", "hlas_transport_connections_dropped_total"); err != nil {
		t.Fatal(err)
	}
}
