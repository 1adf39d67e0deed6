package hep

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// specChunk is one chunk as the HEP3 specification lays it out.
type specChunk struct {
	vendor, typ uint16
	value       []byte
}

// specDecode splits a HEP3 packet by the specification alone: "HEP3",
// a 16-bit total length, then chunks of vendor, type and length (which
// counts the 6-byte chunk header), all big-endian. It is written apart
// from Decode so that the encoder is checked against the format, not
// against itself.
func specDecode(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	if len(b) < 6 || string(b[:4]) != "HEP3" {
		t.Fatalf("no HEP3 id: % x", b[:min(len(b), 6)])
	}
	if got := int(b[4])<<8 | int(b[5]); got != len(b) {
		t.Fatalf("total length field %d, packet is %d bytes", got, len(b))
	}
	var chunks []specChunk
	for i := 6; i < len(b); {
		if len(b)-i < 6 {
			t.Fatalf("truncated chunk header at %d", i)
		}
		c := specChunk{vendor: uint16(b[i])<<8 | uint16(b[i+1]), typ: uint16(b[i+2])<<8 | uint16(b[i+3])}
		n := int(b[i+4])<<8 | int(b[i+5])
		if n < 6 || i+n > len(b) {
			t.Fatalf("chunk %d at %d: length %d", c.typ, i, n)
		}
		c.value = b[i+6 : i+n]
		chunks = append(chunks, c)
		i += n
	}
	m := make(map[uint16][]byte)
	for _, c := range chunks {
		if c.vendor != 0 {
			t.Errorf("chunk %d: vendor %d, want 0 (generic)", c.typ, c.vendor)
		}
		if _, dup := m[c.typ]; dup {
			t.Errorf("chunk %d twice", c.typ)
		}
		m[c.typ] = c.value
	}
	return m
}

func wantChunk(t *testing.T, m map[uint16][]byte, typ uint16, want []byte) {
	t.Helper()
	got, ok := m[typ]
	if !ok {
		t.Errorf("chunk %d missing", typ)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("chunk %d = % x, want % x", typ, got, want)
	}
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

const invite = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"

func TestAppendFollowsSpec(t *testing.T) {
	at := time.Date(2026, 12, 7, 5, 30, 1, 123456789, time.UTC)
	tests := []struct {
		name             string
		p                Packet
		family           byte
		srcType, dstType uint16
		src, dst         []byte
	}{
		{
			name: "IPv4 over UDP, no password",
			p: Packet{IPProtocol: IPProtoUDP, Src: netip.MustParseAddrPort("192.0.2.1:5060"),
				Dst: netip.MustParseAddrPort("198.51.100.7:5080"), Time: at, ProtoType: ProtoSIP, NodeID: 2001,
				Payload: []byte(invite)},
			family: 2, srcType: 3, dstType: 4, src: []byte{192, 0, 2, 1}, dst: []byte{198, 51, 100, 7},
		},
		{
			name: "IPv6 over TCP with password",
			p: Packet{IPProtocol: IPProtoTCP, Src: netip.MustParseAddrPort("[2001:db8::1]:5061"),
				Dst: netip.MustParseAddrPort("[2001:db8::2]:40000"), Time: at, ProtoType: ProtoSIP, NodeID: 7,
				Password: "myHep", Payload: []byte(invite)},
			family: 10, srcType: 5, dstType: 6,
			src: netip.MustParseAddr("2001:db8::1").AsSlice(), dst: netip.MustParseAddr("2001:db8::2").AsSlice(),
		},
		{
			name: "IPv4-mapped IPv6 travels as IPv4",
			p: Packet{IPProtocol: IPProtoUDP, Src: netip.MustParseAddrPort("[::ffff:192.0.2.1]:5060"),
				Dst: netip.MustParseAddrPort("192.0.2.9:5060"), Time: at, ProtoType: ProtoSIP, Payload: []byte("x")},
			family: 2, srcType: 3, dstType: 4, src: []byte{192, 0, 2, 1}, dst: []byte{192, 0, 2, 9},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			b, err := tt.p.Append(prefix)
			if err != nil {
				t.Fatal(err)
			}
			if string(b[:4]) != "keep" {
				t.Fatal("Append overwrote what b held")
			}
			b = b[4:]
			if len(b) != tt.p.Len() {
				t.Errorf("Len() = %d, encoded %d bytes", tt.p.Len(), len(b))
			}
			m := specDecode(t, b)
			wantChunk(t, m, 1, []byte{tt.family})
			wantChunk(t, m, 2, []byte{tt.p.IPProtocol})
			wantChunk(t, m, tt.srcType, tt.src)
			wantChunk(t, m, tt.dstType, tt.dst)
			wantChunk(t, m, 7, be16(tt.p.Src.Port()))
			wantChunk(t, m, 8, be16(tt.p.Dst.Port()))
			wantChunk(t, m, 9, be32(uint32(at.Unix())))
			wantChunk(t, m, 10, be32(123456))
			wantChunk(t, m, 11, []byte{1})
			wantChunk(t, m, 12, be32(tt.p.NodeID))
			wantChunk(t, m, 15, tt.p.Payload)
			if tt.p.Password != "" {
				wantChunk(t, m, 14, []byte(tt.p.Password))
			} else if _, ok := m[14]; ok {
				t.Error("auth key chunk sent without a password")
			}
			for _, other := range []uint16{3, 4, 5, 6} {
				if other != tt.srcType && other != tt.dstType {
					if _, ok := m[other]; ok {
						t.Errorf("chunk %d of the other family present", other)
					}
				}
			}

			// Decode gives back what was encoded.
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.p
			want.Src = netip.AddrPortFrom(want.Src.Addr().Unmap(), want.Src.Port())
			want.Time = at.Truncate(time.Microsecond)
			if got.Src != want.Src || got.Dst != want.Dst || got.IPProtocol != want.IPProtocol ||
				!got.Time.Equal(want.Time) || got.ProtoType != want.ProtoType || got.NodeID != want.NodeID ||
				got.Password != want.Password || !bytes.Equal(got.Payload, want.Payload) {
				t.Errorf("Decode = %+v\nwant     %+v", got, want)
			}
		})
	}
}

func TestAppendRefuses(t *testing.T) {
	v4 := netip.MustParseAddrPort("192.0.2.1:5060")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:5060")
	tests := []struct {
		name string
		p    Packet
		want error
	}{
		{"mixed families", Packet{Src: v4, Dst: v6}, ErrFamily},
		{"no destination", Packet{Src: v4}, ErrFamily},
		{"payload over 64 KiB", Packet{Src: v4, Dst: v4, Payload: make([]byte, 65500)}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.p.Append([]byte("x"))
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if string(b) != "x" {
				t.Errorf("b changed to %q on error", b)
			}
		})
	}
}

// specPacket builds a HEP3 packet by hand from chunks.
func specPacket(chunks ...specChunk) []byte {
	b := []byte("HEP3\x00\x00")
	for _, c := range chunks {
		b = binary.BigEndian.AppendUint16(b, c.vendor)
		b = binary.BigEndian.AppendUint16(b, c.typ)
		b = binary.BigEndian.AppendUint16(b, uint16(6+len(c.value)))
		b = append(b, c.value...)
	}
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	return b
}

func TestDecode(t *testing.T) {
	base := []specChunk{
		{0, 1, []byte{2}}, {0, 2, []byte{17}}, {0, 3, []byte{10, 0, 0, 1}}, {0, 4, []byte{10, 0, 0, 2}},
		{0, 7, be16(5060)}, {0, 8, be16(5070)}, {0, 9, be32(1700000000)}, {0, 10, be32(42)},
		{0, 11, []byte{1}}, {0, 12, be32(99)}, {0, 15, []byte("OPTIONS")},
	}
	with := func(extra ...specChunk) []specChunk { return append(append([]specChunk(nil), base...), extra...) }
	without := func(typ uint16) []specChunk {
		var out []specChunk
		for _, c := range base {
			if c.typ != typ {
				out = append(out, c)
			}
		}
		return out
	}
	t.Run("valid, with a vendor chunk and an unknown generic one", func(t *testing.T) {
		p, err := Decode(specPacket(with(specChunk{0x1234, 1, []byte{9, 9}}, specChunk{0, 200, []byte("?")})...))
		if err != nil {
			t.Fatal(err)
		}
		if p.Src != netip.MustParseAddrPort("10.0.0.1:5060") || p.Dst != netip.MustParseAddrPort("10.0.0.2:5070") ||
			p.IPProtocol != 17 || p.NodeID != 99 || string(p.Payload) != "OPTIONS" ||
			!p.Time.Equal(time.Unix(1700000000, 42000)) {
			t.Errorf("Decode = %+v", p)
		}
	})
	t.Run("trailing bytes after the total length are ignored", func(t *testing.T) {
		if _, err := Decode(append(specPacket(base...), 0xff, 0xff)); err != nil {
			t.Error(err)
		}
	})
	bad := map[string][]byte{
		"empty":             nil,
		"HEP2 id":           append([]byte("HEP2"), specPacket(base...)[4:]...),
		"length past end":   specPacket(base...)[:40],
		"no source address": specPacket(without(3)...),
		"no family":         specPacket(without(1)...),
		"short port":        specPacket(with(specChunk{0, 7, []byte{1}})...),
		"a million µs":      specPacket(with(specChunk{0, 10, be32(1e6)})...),
		"chunk length 3": func() []byte {
			b := specPacket(base...)
			b[10], b[11] = 0, 3
			return b
		}(),
		"truncated chunk header": func() []byte {
			b := append(specPacket(base...), 0, 0, 0)
			binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
			return b
		}(),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	p := Packet{IPProtocol: IPProtoUDP, Src: netip.MustParseAddrPort("192.0.2.1:5060"),
		Dst: netip.MustParseAddrPort("192.0.2.2:5060"), Time: time.Now(), Password: "pw", Payload: []byte(invite)}
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(100, func() { _, _ = p.Append(buf[:0]) }); n != 0 {
		t.Errorf("Append allocates %v times per packet", n)
	}
}

func FuzzDecode(f *testing.F) {
	p := Packet{IPProtocol: IPProtoTCP, Src: netip.MustParseAddrPort("[2001:db8::1]:5061"),
		Dst: netip.MustParseAddrPort("[2001:db8::2]:5062"), Time: time.Unix(1, 2000), ProtoType: 1, NodeID: 3,
		Password: "pw", Payload: []byte(invite)}
	b, _ := p.Append(nil)
	f.Add(b)
	p.Src, p.Dst, p.Password = netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), ""
	b, _ = p.Append(nil)
	f.Add(b)
	f.Add([]byte("HEP3\x00\x06"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes, and decodes to the same packet.
		enc, err := p.Append(nil)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return // many small foreign chunks can hold a payload re-encoding cannot
			}
			t.Fatalf("Append of decoded %+v: %v", p, err)
		}
		q, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode of re-encoded: %v", err)
		}
		unmap := func(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
		if q.Src != unmap(p.Src) || q.Dst != unmap(p.Dst) || q.IPProtocol != p.IPProtocol || !q.Time.Equal(p.Time) ||
			q.NodeID != p.NodeID || q.Password != p.Password || !bytes.Equal(q.Payload, p.Payload) {
			t.Fatalf("round trip changed %+v into %+v", p, q)
		}
	})
}
