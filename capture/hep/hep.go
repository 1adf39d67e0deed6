// Package hep encodes captured SIP messages as HEP version 3 packets
// (the Homer Encapsulation Protocol of sipcapture: Homer, heplify-server,
// sngrep -L) and sends them to a collector over UDP from one goroutine
// behind a bounded queue, so that capture never slows down or blocks the
// SIP path: when the collector or the network cannot keep up, packets are
// dropped and counted.
//
// A HEP3 packet is the ASCII id "HEP3", a 16-bit total length, and chunks,
// each a 16-bit vendor id, a 16-bit type, a 16-bit length counting its
// 6-byte header, and the value; all integers are big-endian.
package hep

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Chunk types of the generic vendor (0) that this package writes and reads.
const (
	ChunkIPFamily     = 1  // uint8: 2 IPv4, 10 IPv6
	ChunkIPProtocol   = 2  // uint8: 17 UDP, 6 TCP
	ChunkSrcIPv4      = 3  // 4 bytes
	ChunkDstIPv4      = 4  // 4 bytes
	ChunkSrcIPv6      = 5  // 16 bytes
	ChunkDstIPv6      = 6  // 16 bytes
	ChunkSrcPort      = 7  // uint16
	ChunkDstPort      = 8  // uint16
	ChunkTimeSeconds  = 9  // uint32, Unix time
	ChunkTimeMicros   = 10 // uint32, microseconds within the second
	ChunkProtocolType = 11 // uint8: 1 SIP
	ChunkCaptureID    = 12 // uint32, the capture agent (node) id
	ChunkAuthKey      = 14 // the collector's password
	ChunkPayload      = 15 // the captured message
	genericVendor     = 0
	chunkHeader       = 6
	packetHeader      = 6
	familyIPv4        = 2
	familyIPv6        = 10
	protoUDP          = 17
	protoTCP          = 6
	typeSIP           = 1
	maxPacket         = 0xffff
)

// ProtoSIP is the protocol type of a SIP payload (chunk 11).
const ProtoSIP = typeSIP

// IP protocol numbers for Packet.IPProtocol (chunk 2).
const (
	IPProtoUDP = protoUDP
	IPProtoTCP = protoTCP
)

// Packet is one captured message.
type Packet struct {
	// IPProtocol is IPProtoUDP or IPProtoTCP (TCP also for TLS and
	// WebSockets, whose payload is the SIP message as sent, decrypted).
	IPProtocol uint8
	// Src and Dst are the addresses the message went from and to; both
	// must be of one family (IPv4-mapped IPv6 counts as IPv4).
	Src, Dst netip.AddrPort
	// Time is when the message was received or sent; only the
	// microseconds travel.
	Time time.Time
	// ProtoType is the payload's protocol, ProtoSIP.
	ProtoType uint8
	// NodeID is the capture agent id, which a collector shows to tell its
	// agents apart.
	NodeID uint32
	// Password is the collector's auth key; empty sends none.
	Password string
	// Payload is the message.
	Payload []byte
}

// Errors of Append and Decode.
var (
	// ErrTooLarge: the packet would exceed HEP's 16-bit length.
	ErrTooLarge = errors.New("hep: packet longer than 65535 bytes")
	// ErrFamily: Src and Dst are not both valid addresses of one family.
	ErrFamily = errors.New("hep: source and destination must be valid addresses of one family")
	// ErrMalformed: the bytes are not a HEP3 packet.
	ErrMalformed = errors.New("hep: malformed HEP3 packet")
)

// Len returns the encoded size of p.
func (p *Packet) Len() int {
	n := packetHeader +
		3*(chunkHeader+1) + // family, ip protocol, protocol type
		2*(chunkHeader+2) + // ports
		3*(chunkHeader+4) + // seconds, microseconds, node id
		chunkHeader + len(p.Payload)
	if p.Src.Addr().Unmap().Is4() {
		n += 2 * (chunkHeader + 4)
	} else {
		n += 2 * (chunkHeader + 16)
	}
	if p.Password != "" {
		n += chunkHeader + len(p.Password)
	}
	return n
}

// Append appends p encoded as one HEP3 packet to b. It does not
// allocate when b has room.
func (p *Packet) Append(b []byte) ([]byte, error) {
	src, dst := p.Src.Addr().Unmap(), p.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return b, ErrFamily
	}
	n := p.Len()
	if n > maxPacket {
		return b, ErrTooLarge
	}
	b = append(b, 'H', 'E', 'P', '3')
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	if src.Is4() {
		b = chunk8(b, ChunkIPFamily, familyIPv4)
	} else {
		b = chunk8(b, ChunkIPFamily, familyIPv6)
	}
	b = chunk8(b, ChunkIPProtocol, p.IPProtocol)
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		b = chunkBytes(b, ChunkSrcIPv4, s[:])
		b = chunkBytes(b, ChunkDstIPv4, d[:])
	} else {
		s, d := src.As16(), dst.As16()
		b = chunkBytes(b, ChunkSrcIPv6, s[:])
		b = chunkBytes(b, ChunkDstIPv6, d[:])
	}
	b = chunk16(b, ChunkSrcPort, p.Src.Port())
	b = chunk16(b, ChunkDstPort, p.Dst.Port())
	us := p.Time.UnixMicro()
	b = chunk32(b, ChunkTimeSeconds, uint32(us/1e6))
	b = chunk32(b, ChunkTimeMicros, uint32(us%1e6))
	b = chunk8(b, ChunkProtocolType, p.ProtoType)
	b = chunk32(b, ChunkCaptureID, p.NodeID)
	if p.Password != "" {
		b = appendHeader(b, ChunkAuthKey, len(p.Password))
		b = append(b, p.Password...)
	}
	b = chunkBytes(b, ChunkPayload, p.Payload)
	return b, nil
}

func appendHeader(b []byte, typ uint16, n int) []byte {
	b = binary.BigEndian.AppendUint16(b, genericVendor)
	b = binary.BigEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint16(b, uint16(chunkHeader+n))
}

func chunk8(b []byte, typ uint16, v uint8) []byte {
	return append(appendHeader(b, typ, 1), v)
}

func chunk16(b []byte, typ uint16, v uint16) []byte {
	return binary.BigEndian.AppendUint16(appendHeader(b, typ, 2), v)
}

func chunk32(b []byte, typ uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(appendHeader(b, typ, 4), v)
}

func chunkBytes(b []byte, typ uint16, v []byte) []byte {
	return append(appendHeader(b, typ, len(v)), v...)
}

// Decode parses one HEP3 packet, for collectors and tests. Chunks of
// other vendors and unknown generic chunks are skipped; a packet without
// addresses of one family is malformed. Payload aliases b.
func Decode(b []byte) (Packet, error) {
	var p Packet
	if len(b) < packetHeader || string(b[:4]) != "HEP3" {
		return p, ErrMalformed
	}
	total := int(binary.BigEndian.Uint16(b[4:6]))
	if total < packetHeader || total > len(b) {
		return p, fmt.Errorf("%w: length %d of %d bytes", ErrMalformed, total, len(b))
	}
	var family uint8
	var src4, dst4 netip.Addr
	var src6, dst6 netip.Addr
	var sport, dport uint16
	var sec, usec uint32
	for rest := b[packetHeader:total]; len(rest) > 0; {
		if len(rest) < chunkHeader {
			return Packet{}, fmt.Errorf("%w: truncated chunk header", ErrMalformed)
		}
		vendor := binary.BigEndian.Uint16(rest)
		typ := binary.BigEndian.Uint16(rest[2:])
		n := int(binary.BigEndian.Uint16(rest[4:]))
		if n < chunkHeader || n > len(rest) {
			return Packet{}, fmt.Errorf("%w: chunk %d length %d", ErrMalformed, typ, n)
		}
		v := rest[chunkHeader:n]
		rest = rest[n:]
		if vendor != genericVendor {
			continue
		}
		want := -1 // exact value length, -1 for any
		switch typ {
		case ChunkIPFamily, ChunkIPProtocol, ChunkProtocolType:
			want = 1
		case ChunkSrcPort, ChunkDstPort:
			want = 2
		case ChunkSrcIPv4, ChunkDstIPv4, ChunkTimeSeconds, ChunkTimeMicros, ChunkCaptureID:
			want = 4
		case ChunkSrcIPv6, ChunkDstIPv6:
			want = 16
		}
		if want >= 0 && len(v) != want {
			return Packet{}, fmt.Errorf("%w: chunk %d value of %d bytes", ErrMalformed, typ, len(v))
		}
		switch typ {
		case ChunkIPFamily:
			family = v[0]
		case ChunkIPProtocol:
			p.IPProtocol = v[0]
		case ChunkSrcIPv4:
			src4 = netip.AddrFrom4([4]byte(v))
		case ChunkDstIPv4:
			dst4 = netip.AddrFrom4([4]byte(v))
		case ChunkSrcIPv6:
			src6 = netip.AddrFrom16([16]byte(v))
		case ChunkDstIPv6:
			dst6 = netip.AddrFrom16([16]byte(v))
		case ChunkSrcPort:
			sport = binary.BigEndian.Uint16(v)
		case ChunkDstPort:
			dport = binary.BigEndian.Uint16(v)
		case ChunkTimeSeconds:
			sec = binary.BigEndian.Uint32(v)
		case ChunkTimeMicros:
			usec = binary.BigEndian.Uint32(v)
		case ChunkProtocolType:
			p.ProtoType = v[0]
		case ChunkCaptureID:
			p.NodeID = binary.BigEndian.Uint32(v)
		case ChunkAuthKey:
			p.Password = string(v)
		case ChunkPayload:
			p.Payload = v
		}
	}
	switch {
	case family == familyIPv4 && src4.IsValid() && dst4.IsValid():
		p.Src, p.Dst = netip.AddrPortFrom(src4, sport), netip.AddrPortFrom(dst4, dport)
	case family == familyIPv6 && src6.IsValid() && dst6.IsValid():
		p.Src, p.Dst = netip.AddrPortFrom(src6, sport), netip.AddrPortFrom(dst6, dport)
	default:
		return Packet{}, fmt.Errorf("%w: no source and destination of family %d", ErrMalformed, family)
	}
	if usec >= 1e6 {
		return Packet{}, fmt.Errorf("%w: %d microseconds", ErrMalformed, usec)
	}
	p.Time = time.Unix(int64(sec), int64(usec)*1000)
	return p, nil
}
