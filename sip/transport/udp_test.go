package transport

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestUDPBatch: a burst queued while the reader is busy comes out whole,
// in order, each datagram with its own source and a Data of its own, in
// fewer reads than datagrams when batched and one read each when not.
func TestUDPBatch(t *testing.T) {
	sizes := []int{1, 100, 1000, 1400, 8000, 9000, 60000}
	for _, batch := range []int{1, DefaultReadBatch} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			blocked, release := make(chan struct{}), make(chan struct{})
			got := make(chan *Packet, 200)
			first := true
			m := newManager(t, Config{ReadBatch: batch}, HandlerFunc(func(p *Packet) {
				if first { // the plug: hold the reader while the burst queues
					first = false
					blocked <- struct{}{}
					<-release
					return
				}
				got <- p
			}))
			addr := listen(t, m, UDP, "127.0.0.1")
			senders := make([]*net.UDPConn, 3)
			for i := range senders {
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				senders[i] = c
			}
			if _, err := senders[0].WriteToUDPAddrPort([]byte("plug"), addr); err != nil {
				t.Fatal(err)
			}
			select {
			case <-blocked:
			case <-time.After(failsafe):
				t.Fatal("the plug did not arrive")
			}

			type sent struct {
				data []byte
				from netip.AddrPort
			}
			var want []sent
			for i := range 100 {
				c := senders[i%len(senders)]
				size := sizes[i%len(sizes)]
				d := bytes.Repeat([]byte{byte('a' + i%26)}, size)
				copy(d, fmt.Sprint(i))
				if _, err := c.WriteToUDPAddrPort(d, addr); err != nil {
					t.Fatal(err)
				}
				want = append(want, sent{d, addrPortOf(c.LocalAddr())})
			}
			close(release)

			var kept []*Packet
			for i, w := range want {
				var p *Packet
				select {
				case p = <-got:
				case <-time.After(failsafe):
					t.Fatalf("datagram %d did not arrive", i)
				}
				if !bytes.Equal(p.Data, w.data) || p.Remote != w.from || p.Local != addr || p.Proto != UDP {
					t.Fatalf("datagram %d: %d bytes %.12q from %s, want %d bytes %.12q from %s",
						i, len(p.Data), p.Data, p.Remote, len(w.data), w.data, w.from)
				}
				kept = append(kept, p)
			}
			// Data is the handler's own: later reads did not overwrite it.
			for i, p := range kept {
				if !bytes.Equal(p.Data, want[i].data) || cap(p.Data) != len(p.Data) {
					t.Fatalf("datagram %d changed after delivery, or has spare capacity %d", i, cap(p.Data)-len(p.Data))
				}
			}
			s := m.Stats().UDP
			if s.PacketsIn != 101 {
				t.Fatalf("PacketsIn %d, want 101", s.PacketsIn)
			}
			if batch == 1 && s.Reads != 101 {
				t.Fatalf("%d reads for 101 datagrams read singly", s.Reads)
			}
			if batch > 1 && (s.Reads < 2 || s.Reads > 1+(100+uint64(batch)-1)/uint64(batch)) {
				t.Fatalf("%d reads for a plug and a queued burst of 100 in batches of %d", s.Reads, batch)
			}
		})
	}
}

// TestNewPacket: one allocation for a datagram up to the largest class,
// two beyond it, and always a copy of exactly the datagram.
func TestNewPacket(t *testing.T) {
	last := classRoom(packetClasses[len(packetClasses)-1].class)
	sizes := []int{0, 1, maxDatagram}
	for _, c := range packetClasses {
		sizes = append(sizes, classRoom(c.class), classRoom(c.class)+1)
	}
	for _, n := range sizes {
		src := bytes.Repeat([]byte{'x'}, n)
		p := newPacket(src)
		if !bytes.Equal(p.Data, src) || len(p.Data) != cap(p.Data) {
			t.Fatalf("size %d: got %d bytes, capacity %d", n, len(p.Data), cap(p.Data))
		}
		if n > 0 {
			src[0] = 'y'
			if p.Data[0] != 'x' {
				t.Fatalf("size %d: Data shares the read buffer", n)
			}
		}
		want := 1.0
		if n > last {
			want = 2
		}
		if got := testing.AllocsPerRun(20, func() { _ = newPacket(src) }); got != want {
			t.Fatalf("size %d: %v allocations, want %v", n, got, want)
		}
	}
}

// TestPacketClassesFillSizeClasses: each class costs exactly the
// allocator size class it is named after, and the classes ascend, so the
// first that fits a datagram is the cheapest. (Should a Go release change
// its size classes or object headers, this says which table row to fix.)
func TestPacketClassesFillSizeClasses(t *testing.T) {
	const n = 512
	for i, c := range packetClasses {
		if i > 0 && c.class <= packetClasses[i-1].class {
			t.Fatalf("class %d after %d", c.class, packetClasses[i-1].class)
		}
		src := make([]byte, classRoom(c.class))
		keep := make([]*Packet, n)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for j := range keep {
			keep[j] = newPacket(src)
		}
		runtime.ReadMemStats(&after)
		// Other goroutines may allocate meanwhile: allow for less than
		// the 64 bytes between neighbouring size classes.
		if got := int(after.TotalAlloc-before.TotalAlloc) / n; got < c.class || got >= c.class+32 {
			t.Errorf("class %d: a packet with %d bytes of data costs %d bytes", c.class, len(src), got)
		}
		runtime.KeepAlive(keep)
	}
}

func BenchmarkNewPacket(b *testing.B) {
	src := []byte(benchInvite)
	b.ReportAllocs()
	for b.Loop() {
		_ = newPacket(src)
	}
}
