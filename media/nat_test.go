package media

import (
	"net/netip"
	"testing"
)

// The NAT test on the SDP's connection addresses.
func TestPrivateSDP(t *testing.T) {
	src := netip.MustParseAddr("203.0.113.7")
	for _, tc := range []struct {
		sdp  string
		src  netip.Addr
		want bool
	}{
		{"c=IN IP4 192.168.1.10\r\n", src, true},
		{"c=IN IP4 10.1.2.3\n", src, true},
		{"c=IN IP4 172.16.0.1/127\r\n", src, true},
		{"c=IN IP4 100.64.1.1\r\n", src, true},
		{"c=IN IP6 fd00::1\r\n", src, true},
		{"c=IN IP6 fe80::1\r\n", src, true},
		{"v=0\r\nc=IN IP4 198.51.100.1\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP4 192.168.0.2\r\n", src, true},
		{"c=IN IP4 192.168.1.10\r\n", netip.MustParseAddr("192.168.1.10"), false},
		{"c=IN IP4 198.51.100.1\r\n", src, false},
		{"c=IN IP4 0.0.0.0\r\n", src, false}, // hold (RFC 2543)
		{"c=IN IP4 127.0.0.1\r\n", src, false},
		{"c=IN IP4 phone.example\r\n", src, false},
		{"c=IN IP4\r\n", src, false},
		{"c=XX IP4 192.168.1.1\r\n", src, false},
		{"a=c=IN IP4 192.168.1.1\r\n", src, false},
		{"", src, false},
	} {
		if got := PrivateSDP([]byte(tc.sdp), tc.src); got != tc.want {
			t.Errorf("PrivateSDP(%q, %v) = %v, want %v", tc.sdp, tc.src, got, tc.want)
		}
	}
}

// FuzzBehindNAT: any SDP is scanned without a panic.
func FuzzPrivateSDP(f *testing.F) {
	f.Add([]byte("v=0\r\nc=IN IP4 192.168.1.10/127/2\r\n"), []byte{203, 0, 113, 7})
	f.Add([]byte("c=IN IP6 fd00::1%eth0\n"), []byte{})
	f.Fuzz(func(t *testing.T, sdp, src []byte) {
		a, _ := netip.AddrFromSlice(src)
		PrivateSDP(sdp, a)
	})
}
