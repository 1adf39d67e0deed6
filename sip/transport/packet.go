package transport

import "unsafe"

// packetSize is the size of a Packet without its data.
const packetSize = int(unsafe.Sizeof(Packet{}))

// packetWith is a Packet allocated together with the bytes of its Data:
// one allocation per datagram instead of two. B is a byte array.
type packetWith[B any] struct {
	p   Packet
	buf B
}

// allocPacket returns a Packet and the byte array allocated with it.
func allocPacket[B any]() (*Packet, []byte) {
	s := new(packetWith[B])
	return &s.p, unsafe.Slice((*byte)(unsafe.Pointer(&s.buf)), unsafe.Sizeof(s.buf))
}

// mallocHeader is what the Go allocator (since Go 1.22) adds to an
// object with pointers larger than 512 bytes, for its type information.
const mallocHeader = 8

// packetClasses are the Packet-with-data shapes, smallest first, each
// filling one of the Go allocator's size classes from 384 to 8192 bytes
// (class), so a datagram wastes no more room than the allocator's own
// rounding of a separate copy would. It is a table of constants: nothing
// changes it.
var packetClasses = [...]struct {
	class int
	alloc func() (*Packet, []byte)
}{
	{384, allocPacket[[384 - packetSize]byte]},
	{448, allocPacket[[448 - packetSize]byte]},
	{512, allocPacket[[512 - packetSize]byte]},
	{576, allocPacket[[576 - packetSize - mallocHeader]byte]},
	{640, allocPacket[[640 - packetSize - mallocHeader]byte]},
	{704, allocPacket[[704 - packetSize - mallocHeader]byte]},
	{768, allocPacket[[768 - packetSize - mallocHeader]byte]},
	{896, allocPacket[[896 - packetSize - mallocHeader]byte]},
	{1024, allocPacket[[1024 - packetSize - mallocHeader]byte]},
	{1152, allocPacket[[1152 - packetSize - mallocHeader]byte]},
	{1280, allocPacket[[1280 - packetSize - mallocHeader]byte]},
	{1408, allocPacket[[1408 - packetSize - mallocHeader]byte]},
	{1536, allocPacket[[1536 - packetSize - mallocHeader]byte]},
	{1792, allocPacket[[1792 - packetSize - mallocHeader]byte]},
	{2048, allocPacket[[2048 - packetSize - mallocHeader]byte]},
	{2304, allocPacket[[2304 - packetSize - mallocHeader]byte]},
	{2688, allocPacket[[2688 - packetSize - mallocHeader]byte]},
	{3072, allocPacket[[3072 - packetSize - mallocHeader]byte]},
	{3200, allocPacket[[3200 - packetSize - mallocHeader]byte]},
	{3456, allocPacket[[3456 - packetSize - mallocHeader]byte]},
	{4096, allocPacket[[4096 - packetSize - mallocHeader]byte]},
	{4864, allocPacket[[4864 - packetSize - mallocHeader]byte]},
	{5376, allocPacket[[5376 - packetSize - mallocHeader]byte]},
	{6144, allocPacket[[6144 - packetSize - mallocHeader]byte]},
	{6528, allocPacket[[6528 - packetSize - mallocHeader]byte]},
	{6784, allocPacket[[6784 - packetSize - mallocHeader]byte]},
	{6912, allocPacket[[6912 - packetSize - mallocHeader]byte]},
	{8192, allocPacket[[8192 - packetSize - mallocHeader]byte]},
}

// classRoom is how many bytes of data a class of packetClasses holds.
func classRoom(class int) int {
	if class <= 512 {
		return class - packetSize
	}
	return class - packetSize - mallocHeader
}

// newPacket returns a Packet whose Data is a copy of b, its capacity
// its length (an append reallocates). Up to 8 KiB, which covers SIP over
// UDP in practice, Packet and Data are one allocation.
func newPacket(b []byte) *Packet {
	for _, c := range packetClasses {
		if len(b) <= classRoom(c.class) {
			p, buf := c.alloc()
			p.Data = buf[:len(b):len(b)]
			copy(p.Data, b)
			return p
		}
	}
	data := make([]byte, len(b))
	copy(data, b)
	return &Packet{Data: data}
}
