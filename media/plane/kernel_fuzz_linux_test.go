//go:build linux

package plane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// tcxNext and tcRedirect are the program's verdicts as the test run
// reports them.
const (
	tcxNext    = 0xffffffff // -1
	tcRedirect = 7
)

// csum is the one's complement sum of b folded to 16 bits, computed here
// on its own (not as the program does, incrementally).
func csum(parts ...[]byte) uint16 {
	var s uint32
	for _, b := range parts {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// frame6 is frame for IPv6 (no extension headers); the UDP checksum is
// mandatory there, and zeroSum sends a datagram without one anyway.
func frame6(src, dst [16]byte, sport, dport uint16, hops uint8, payload []byte, zeroSum bool) []byte {
	ulen := 8 + len(payload)
	b := make([]byte, 14+40+ulen)
	b[12], b[13] = 0x86, 0xdd
	ip := b[14:54]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(ulen))
	ip[6], ip[7] = 17, hops
	copy(ip[8:], src[:])
	copy(ip[24:], dst[:])
	udp := b[54:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen))
	copy(udp[8:], payload)
	if !zeroSum {
		sum := ^csum(pseudo6(ip[8:24], ip[24:40], ulen), udp)
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(udp[6:], sum)
	}
	return b
}

// pseudo6 is the UDP pseudo-header over IPv6 (RFC 8200 §8.1).
func pseudo6(src, dst []byte, ulen int) []byte {
	p := append(append([]byte{}, src...), dst...)
	return append(p, 0, 0, byte(ulen>>8), byte(ulen), 0, 0, 0, 17)
}

// frame builds an Ethernet frame (zero MACs: the loopback's, for this
// host) with an IPv4/UDP datagram and correct checksums; zeroSum sends
// it without a UDP checksum.
func frame(src, dst [4]byte, sport, dport uint16, ttl uint8, payload []byte, zeroSum bool) []byte {
	ulen := 8 + len(payload)
	b := make([]byte, 14+20+ulen)
	b[12], b[13] = 0x08, 0x00
	ip := b[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+ulen))
	ip[8], ip[9] = ttl, 17
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], ^csum(ip))
	udp := b[34:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen))
	copy(udp[8:], payload)
	if !zeroSum {
		pseudo := append(append(append([]byte{}, src[:]...), dst[:]...), 0, 17, byte(ulen>>8), byte(ulen))
		sum := ^csum(pseudo, udp)
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(udp[6:], sum)
	}
	return b
}

// FuzzForwardProgram runs the kernel path's program (BPF_PROG_TEST_RUN)
// on datagrams of one flow in its table, with what the fuzzer chooses
// for the payload, TTL, the checksum's presence and the rewrite, and on
// raw frames. A datagram the program takes must come out as the reader
// would send it (addresses and ports of the entry, the payload as it
// was, TTL less one) with checksums that verify; one it leaves must be
// untouched; and it must take exactly the datagrams it may.
func FuzzForwardProgram(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("running BPF programs needs root (CAP_BPF); CI runs as root")
	}
	rtp := rtpPacket(1)
	for _, v6 := range []bool{false, true} {
		f.Add(v6, rtp, uint8(64), false, uint32(0x0a000005), uint32(0xc0a8010a), uint16(30002), uint16(40000), []byte{})
		f.Add(v6, rtp, uint8(2), true, uint32(0x7f000001), uint32(0x7f000001), uint16(30002), uint16(1), []byte{})
		f.Add(v6, []byte{0x80, 200, 0, 1}, uint8(64), false, uint32(1), uint32(2), uint16(3), uint16(4), []byte{})
		f.Add(v6, []byte{0x80}, uint8(1), false, uint32(1), uint32(2), uint16(3), uint16(4), []byte{0, 1, 2})
		f.Add(v6, make([]byte, 2100), uint8(64), false, uint32(1), uint32(2), uint16(3), uint16(4), make([]byte, 20))
	}

	k, err := newKernel(8)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(k.close)
	keySrc, keyDst := [4]byte{198, 51, 100, 11}, [4]byte{198, 51, 100, 1}
	const keySport, keyDport = 4000, 30000
	key := key4{Daddr: keyDst, Saddr: keySrc, Dport: be16(keyDport), Sport: be16(keySport)}
	keySrc6, keyDst6 := netip.MustParseAddr("2001:db8::11").As16(), netip.MustParseAddr("2001:db8::1").As16()
	key6 := key6{Daddr: keyDst6, Saddr: keySrc6, Dport: be16(keyDport), Sport: be16(keySport)}

	f.Fuzz(func(t *testing.T, v6 bool, payload []byte, ttl uint8, zeroSum bool, nsrc, ndst uint32, nsport, ndport uint16, raw []byte) {
		var val fwd4
		binary.BigEndian.PutUint32(val.Saddr[:], nsrc)
		binary.BigEndian.PutUint32(val.Daddr[:], ndst)
		val.Sport, val.Dport, val.Ifindex, val.Slot = be16(nsport), be16(ndport), 1, 3 // lo
		val6 := fwd6{Saddr: [16]byte{0x20, 0x01, 0x0d, 0xb8}, Daddr: [16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff},
			Sport: val.Sport, Dport: val.Dport, Ifindex: 1, Slot: 3}
		copy(val6.Saddr[12:], val.Saddr[:])
		copy(val6.Daddr[12:], val.Daddr[:])
		if err := k.fwd.Update(key, val, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
		if err := k.fwd6.Update(key6, val6, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
		if len(raw) >= 14 && len(raw) <= 3000 {
			out := make([]byte, len(raw)+64)
			ret, err := k.prog.Run(&ebpf.RunOptions{Data: raw, DataOut: out})
			switch {
			case errors.Is(err, unix.EINVAL):
				// The test run refuses a frame the stack would not pass
				// up (an IPv4 type without an IPv4 header): no verdict.
			case err != nil:
				t.Fatal(err)
			case ret != tcxNext && ret != tcRedirect:
				t.Fatalf("raw frame: verdict %#x", ret)
			}
		}
		if len(payload) > maxPacket+64 {
			// The test run takes a page at most; past maxPacket all is
			// the same to the program.
			payload = payload[:maxPacket+64]
		}
		in := frame(keySrc, keyDst, keySport, keyDport, ttl, payload, zeroSum)
		if v6 {
			in = frame6(keySrc6, keyDst6, keySport, keyDport, ttl, payload, zeroSum)
		}
		out := make([]byte, len(in)+64)
		ret, err := k.prog.Run(&ebpf.RunOptions{Data: in, DataOut: out})
		if err != nil {
			t.Fatal(err)
		}
		out = out[:len(in)]
		take := len(payload) >= 2 && !(payload[1] >= 192 && payload[1] <= 223) && ttl > 1 && len(payload) <= maxPacket &&
			!(v6 && zeroSum)
		switch {
		case !take:
			if ret != tcxNext || !bytes.Equal(out, in) {
				t.Fatalf("left to the stack: verdict %#x, frame changed %v", ret, !bytes.Equal(out, in))
			}
			return
		case ret != tcRedirect:
			t.Fatalf("a datagram of the flow (%d bytes, TTL %d): verdict %#x, want redirect", len(payload), ttl, ret)
		}
		if v6 {
			want := frame6(val6.Saddr, val6.Daddr, nsport, ndport, ttl-1, payload, false)
			udp := out[54:]
			if csum(pseudo6(out[22:38], out[38:54], len(udp)), udp) != 0xffff {
				t.Fatalf("UDP checksum %x does not verify", udp[6:8])
			}
			out[60], out[61], want[60], want[61] = 0, 0, 0, 0
			if !bytes.Equal(out, want) {
				t.Fatalf("rewritten frame\n%x\nwant\n%x", out, want)
			}
			return
		}
		want := frame(val.Saddr, val.Daddr, nsport, ndport, ttl-1, payload, zeroSum)
		ip, udp := out[14:34], out[34:]
		if csum(ip) != 0xffff {
			t.Fatalf("IP checksum does not verify: %x", ip)
		}
		if !zeroSum {
			ulen := len(udp)
			pseudo := append(append([]byte{}, ip[12:20]...), 0, 17, byte(ulen>>8), byte(ulen))
			if csum(pseudo, udp) != 0xffff {
				t.Fatalf("UDP checksum %x does not verify", udp[6:8])
			}
		} else if udp[6] != 0 || udp[7] != 0 {
			t.Fatalf("no UDP checksum became %x", udp[6:8])
		}
		// All but the checksums as the reader would send it (a checksum
		// may differ only as 0x0000 and 0xffff, the same sum).
		for _, o := range []int{14 + 10, 34 + 6} {
			out[o], out[o+1], want[o], want[o+1] = 0, 0, 0, 0
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("rewritten frame\n%x\nwant\n%x", out, want)
		}

	})
}
