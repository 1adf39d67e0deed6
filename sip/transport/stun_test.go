package transport

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/stund"
)

// stunDatagram builds a STUN message header with the given first byte,
// cookie and attribute bytes (RFC 8489 §5), its length field set to
// len(attrs) plus lengthDelta.
func stunDatagram(first byte, cookie uint32, attrs []byte, lengthDelta int) []byte {
	b := make([]byte, 20, 20+len(attrs))
	b[0], b[1] = first, 0x01 // 0x0001: Binding request
	binary.BigEndian.PutUint16(b[2:4], uint16(len(attrs)+lengthDelta))
	binary.BigEndian.PutUint32(b[4:8], cookie)
	copy(b[8:20], "transaction!")
	return append(b, attrs...)
}

// stunCall is one call of the Config.STUN hook.
type stunCall struct {
	req           []byte
	local, remote netip.AddrPort
}

// TestSTUNDemux checks RFC 7983 §7 demultiplexing on a SIP UDP socket: a
// datagram framed as STUN goes to Config.STUN and its answer leaves from
// that socket; SIP, and anything not framed as STUN, still reaches the
// Handler.
func TestSTUNDemux(t *testing.T) {
	valid := stunDatagram(0x00, stunCookie, []byte{0x80, 0x22, 0x00, 0x04, 'a', 'b', 'c', 'd'}, 0)
	silent := stunDatagram(0x00, stunCookie, nil, 0)
	copy(silent[8:20], "be-quiet-now")
	for _, fam := range families(t) {
		t.Run(fam.name, func(t *testing.T) {
			h := newSink()
			calls := make(chan stunCall, 10)
			hook := func(dst, req []byte, local, remote netip.AddrPort) []byte {
				calls <- stunCall{append([]byte(nil), req...), local, remote}
				if bytes.Equal(req, silent) {
					return dst // nothing to send, as for a rate-limited request
				}
				dst = append(dst, "answer:"...)
				return append(dst, req[8:20]...)
			}
			m := newManager(t, Config{STUN: hook}, h)
			addr := listen(t, m, "udp", fam.host)
			client, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			_ = client.SetDeadline(time.Now().Add(failsafe))
			clientAddr := addrPortOf(client.LocalAddr())

			// Not STUN framing, although the first byte is below 4: a
			// wrong cookie, a length that is not the datagram's, a
			// length that is not a multiple of 4, too short for a header.
			notSTUN := [][]byte{
				stunDatagram(0x00, 0x2112A443, nil, 0),
				stunDatagram(0x00, stunCookie, []byte{1, 2, 3, 4}, 4),
				stunDatagram(0x00, stunCookie, []byte{1, 2, 3, 4, 5, 6}, 0),
				stunDatagram(0x00, stunCookie, nil, 0)[:19],
				stunDatagram(0x04, stunCookie, nil, 0), // first byte 4: outside RFC 7983's STUN range
			}
			for _, d := range [][]byte{silent, valid, []byte(options0)} {
				if _, err := client.Write(d); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range notSTUN {
				if _, err := client.Write(d); err != nil {
					t.Fatal(err)
				}
			}

			for _, want := range [][]byte{silent, valid} {
				select {
				case c := <-calls:
					if !bytes.Equal(c.req, want) || c.local != addr || c.remote != clientAddr {
						t.Fatalf("STUN hook got %x from %s on %s, want %x from %s on %s", c.req, c.remote, c.local, want, clientAddr, addr)
					}
				case <-time.After(failsafe):
					t.Fatal("the STUN datagram never reached the hook")
				}
			}
			// Only the answered request gets a datagram back, from the
			// listening socket.
			buf := make([]byte, maxDatagram)
			n, from, err := client.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != "answer:transaction!" || unmap(from) != addr {
				t.Fatalf("answer %q from %s, want %q from %s", got, from, "answer:transaction!", addr)
			}

			// The SIP message and every datagram not framed as STUN go to
			// the Handler, in order.
			for _, want := range append([][]byte{[]byte(options0)}, notSTUN...) {
				p := h.next(t)
				if !bytes.Equal(p.Data, want) || p.Remote != clientAddr || p.Local != addr {
					t.Fatalf("handler got %q from %s, want %q from %s", p.Data, p.Remote, want, clientAddr)
				}
			}
			select {
			case c := <-calls:
				t.Fatalf("unexpected STUN hook call with %x", c.req)
			default:
			}
			s := m.Stats().UDP
			if s.STUNIn != 2 || s.STUNOut != 1 || s.PacketsIn != uint64(1+len(notSTUN)) || s.BytesOut != uint64(len("answer:transaction!")) {
				t.Fatalf("stats %+v: want 2 STUN in, 1 STUN out, %d packets to the handler", s, 1+len(notSTUN))
			}
		})
	}
}

// TestSTUNWithoutHook checks that without Config.STUN a STUN datagram is
// handed to the Handler like any other: the demultiplexing is opt-in.
func TestSTUNWithoutHook(t *testing.T) {
	h := newSink()
	m := newManager(t, Config{}, h)
	addr := listen(t, m, "udp", "127.0.0.1")
	client, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	d := stunDatagram(0x00, stunCookie, nil, 0)
	if _, err := client.Write(d); err != nil {
		t.Fatal(err)
	}
	if p := h.next(t); !bytes.Equal(p.Data, d) {
		t.Fatalf("handler got %x, want %x", p.Data, d)
	}
	if s := m.Stats().UDP; s.STUNIn != 0 {
		t.Fatalf("STUNIn %d without a hook", s.STUNIn)
	}
}

func TestIsSTUN(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"RFC8489_5/header only", stunDatagram(0x00, stunCookie, nil, 0), true},
		{"RFC8489_5/with attribute", stunDatagram(0x00, stunCookie, []byte{0, 6, 0, 1, 'u', 0, 0, 0}, 0), true},
		{"RFC7983_7/first byte 3", stunDatagram(0x03, stunCookie, nil, 0), true},
		{"RFC7983_7/first byte 4", stunDatagram(0x04, stunCookie, nil, 0), false},
		{"RFC3489 without cookie", stunDatagram(0x00, 0x01020304, nil, 0), false},
		{"length beyond datagram", stunDatagram(0x00, stunCookie, nil, 4), false},
		{"datagram beyond length", stunDatagram(0x00, stunCookie, []byte{0, 0, 0, 0}, -4), false},
		{"length not a multiple of 4", stunDatagram(0x00, stunCookie, []byte{0, 0}, 0), false},
		{"short", []byte{0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42}, false},
		{"empty", nil, false},
		{"SIP", []byte(options0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isSTUN(tt.b); got != tt.want {
				t.Fatalf("isSTUN(%x) = %v, want %v", tt.b, got, tt.want)
			}
		})
	}
}

// FuzzIsSTUN checks that the demultiplexer never panics and accepts
// exactly what the STUN server takes for a message, within RFC 7983's
// first-byte range: the two framing checks are written separately (the
// transport does not depend on stund), so each is the other's oracle.
func FuzzIsSTUN(f *testing.F) {
	f.Add(stunDatagram(0x00, stunCookie, nil, 0))
	f.Add(stunDatagram(0x01, stunCookie, []byte{0x80, 0x28, 0, 4, 1, 2, 3, 4}, 0))
	f.Add(stunDatagram(0x04, stunCookie, nil, 0))
	f.Add([]byte(options0))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := len(b) > 0 && b[0] <= 3 && stund.IsMessage(b)
		if got := isSTUN(b); got != want {
			t.Fatalf("isSTUN(%x) = %v, stund.IsMessage in RFC 7983's range says %v", b, got, want)
		}
	})
}
