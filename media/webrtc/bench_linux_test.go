//go:build linux

package webrtc

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/hlas-voip/hlas/media/plane"
)

// pump sends b.N packets made by next from sender to dst, at most 64 in
// flight, and waits until recvr has them all. An op is one packet from
// party to party through the plane, the parties' syscalls (and what next
// costs) included.
func pump(b *testing.B, sender *net.UDPConn, dst netip.AddrPort, recvr *net.UDPConn, next func(i int) []byte) {
	b.Helper()
	tokens := make(chan struct{}, 64)
	done := make(chan error, 1)
	n := b.N
	go func() {
		buf := make([]byte, 2048)
		recvr.SetReadDeadline(time.Now().Add(time.Minute))
		for range n {
			if _, _, err := recvr.ReadFromUDPAddrPort(buf); err != nil {
				done <- err
				return
			}
			<-tokens
		}
		done <- nil
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range n {
		select {
		case tokens <- struct{}{}:
		case err := <-done:
			b.Fatalf("after %d packets: %v", i, err)
		}
		if _, err := sender.WriteToUDPAddrPort(next(i), dst); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// benchBridge is a stream whose leg a, facing x, has an endpoint with
// keys and x validated by ICE; leg b faces the plain party y.
func benchBridge(b *testing.B, profile srtp.ProtectionProfile) (br *bridge, x, y *net.UDPConn, browser *srtpKeys) {
	br = newBridge(b, Config{})
	x, y = listen(b), listen(b)
	br.b.SetPeer(addrOf(y), netip.AddrPort{}, false)
	browser = setKeys(b, br.e, profile)
	validate(b, br.e, br.a.Addr(), x)
	return br, x, y, browser
}

// benchPacket is 20 ms of G.711 with sequence number seq, in buf.
func benchPacket(buf []byte, seq uint16) []byte {
	p := buf[:12+160]
	p[0], p[1] = 0x80, 0
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(p[8:], 0x11223344)
	return p
}

// BenchmarkForwardPlain is media/plane's BenchmarkForward in this
// harness: two plain legs, the baseline for the two below.
func BenchmarkForwardPlain(b *testing.B) {
	p, _ := newPlane(b)
	x, y := listen(b), listen(b)
	a, err := p.Allocate(lo4)
	if err != nil {
		b.Fatal(err)
	}
	l, err := p.Allocate(lo4)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	defer l.Close()
	a.SetPeer(addrOf(x), netip.AddrPort{}, false)
	l.SetPeer(addrOf(y), netip.AddrPort{}, false)
	plane.Link(a, l)
	buf := make([]byte, 2048)
	pump(b, x, a.Addr(), y, func(i int) []byte { return benchPacket(buf, uint16(i)) })
}

// BenchmarkSRTPToRTP: the browser's SRTP through the plane to the
// phone as plain RTP. The browser's encryption is in the op; see
// BenchmarkBrowserProtect for its share.
func BenchmarkSRTPToRTP(b *testing.B) {
	for _, profile := range profiles {
		b.Run(profile.String(), func(b *testing.B) {
			br, x, y, browser := benchBridge(b, profile)
			buf := make([]byte, 2048)
			pump(b, x, br.a.Addr(), y, func(i int) []byte {
				p := benchPacket(buf, uint16(i))
				n, err := browser.protect(p, false)
				if err != nil {
					b.Fatal(err)
				}
				return buf[:n]
			})
			if st := br.a.Stats(); st.Dropped != 0 {
				b.Fatalf("%d dropped", st.Dropped)
			}
		})
	}
}

// BenchmarkRTPToSRTP: the phone's plain RTP through the plane to the
// browser as SRTP (the browser does not decrypt it here).
func BenchmarkRTPToSRTP(b *testing.B) {
	for _, profile := range profiles {
		b.Run(profile.String(), func(b *testing.B) {
			br, x, y, _ := benchBridge(b, profile)
			buf := make([]byte, 2048)
			pump(b, y, br.b.Addr(), x, func(i int) []byte { return benchPacket(buf, uint16(i)) })
			if st := br.b.Stats(); st.Dropped != 0 {
				b.Fatalf("%d dropped", st.Dropped)
			}
		})
	}
}

// BenchmarkBrowserProtect is the sending browser's share of
// BenchmarkSRTPToRTP: one packet protected, no plane; also the cost of
// the plane's Protect.
func BenchmarkBrowserProtect(b *testing.B) {
	for _, profile := range profiles {
		b.Run(profile.String(), func(b *testing.B) {
			_, browser := testKeys(b, profile)
			buf := make([]byte, 2048)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := browser.protect(benchPacket(buf, uint16(i)), false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSRTPNoAllocation: a packet through a WebRTC leg allocates nothing,
// either way, with both profiles (the parties included; pion/srtp
// decrypts and encrypts in the plane's buffers).
func TestSRTPNoAllocation(t *testing.T) {
	for _, profile := range profiles {
		t.Run(profile.String(), func(t *testing.T) {
			br := newBridge(t, Config{})
			x, y := listen(t), listen(t)
			br.b.SetPeer(addrOf(y), netip.AddrPort{}, false)
			browser := setKeys(t, br.e, profile)
			validate(t, br.e, br.a.Addr(), x)
			out, in := make([]byte, 2048), make([]byte, 2048)
			x.SetReadDeadline(time.Now().Add(time.Minute))
			y.SetReadDeadline(time.Now().Add(time.Minute))
			seq := uint16(0)
			once := func() {
				seq++
				n, err := browser.protect(benchPacket(out, seq), false)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := x.WriteToUDPAddrPort(out[:n], br.a.Addr()); err != nil {
					t.Fatal(err)
				}
				if n, _, err := y.ReadFromUDPAddrPort(in); err != nil || n != 172 {
					t.Fatalf("the phone got %d bytes: %v", n, err)
				}
				if _, err := y.WriteToUDPAddrPort(benchPacket(out, seq), br.b.Addr()); err != nil {
					t.Fatal(err)
				}
				if n, _, err := x.ReadFromUDPAddrPort(in); err != nil || n != 172+browser.rtpOverhead {
					t.Fatalf("the browser got %d bytes: %v", n, err)
				}
			}
			once() // the SSRC's state in both contexts
			switch n := testing.AllocsPerRun(200, once); {
			case raceBuild:
				t.Logf("%v allocations per round trip; counted only without -race (sync.Pool)", n)
			case n != 0:
				t.Errorf("%v allocations per round trip, want none", n)
			}
		})
	}
}
