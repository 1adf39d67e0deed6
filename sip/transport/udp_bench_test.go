package transport

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// udpDrainBench measures how fast a UDP listener's reader empties its
// socket: the sender's speed (a system call per datagram) does not count.
// Each round blocks the reader on a plug datagram, queues a burst the
// receive buffer can hold, then times the reader through it.
type udpDrainBench struct {
	gated   atomic.Bool
	blocked chan struct{} // the reader is held at the plug
	release chan struct{}
	seen    atomic.Int64 // datagrams the reader passed to the callback
	target  atomic.Int64
	done    chan struct{} // seen reached target
}

// pass is the Handler or Admit: it counts and, at a plug, holds the reader.
func (d *udpDrainBench) pass() {
	if d.gated.Load() {
		d.gated.Store(false)
		d.blocked <- struct{}{}
		<-d.release
		return
	}
	if d.seen.Add(1) == d.target.Load() {
		d.done <- struct{}{}
	}
}

func benchUDPDrain(b *testing.B, batch int, refuse bool, msg []byte) {
	d := &udpDrainBench{blocked: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{}, 1)}
	cfg := Config{ReadBatch: batch, ReadBuffer: 32 << 20}
	var h Handler
	if refuse {
		cfg.Admit = func(string, netip.AddrPort) bool { d.pass(); return false }
	} else {
		h = HandlerFunc(func(*Packet) { d.pass() })
	}
	m := New(cfg, h)
	defer m.Close()
	a, err := m.Listen(UDP, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	dst := addrPortOf(a)
	// A burst the buffer surely holds: the kernel charges a loopback
	// datagram about twice its size or more.
	burst := 256
	if rb := m.udpListeners()[0].readBuffer; rb > 0 {
		burst = max(16, min(rb/(4*(len(msg)+512)), 8192))
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	send := func() {
		if _, err := c.WriteToUDPAddrPort(msg, dst); err != nil {
			b.Fatal(err)
		}
	}

	var before, after runtime.MemStats
	var drained time.Duration
	b.SetBytes(int64(len(msg)))
	b.StopTimer()
	runtime.ReadMemStats(&before)
	for left := b.N; left > 0; {
		n := min(left, burst)
		left -= n
		d.gated.Store(true)
		send() // the plug
		<-d.blocked
		for range n {
			send()
		}
		d.seen.Store(0)
		d.target.Store(int64(n))
		b.StartTimer()
		start := time.Now()
		d.release <- struct{}{}
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			b.Fatalf("%d of %d datagrams read: the receive buffer dropped some", d.seen.Load(), n)
		}
		drained += time.Since(start)
		b.StopTimer()
	}
	runtime.ReadMemStats(&after)
	rounds := (b.N + burst - 1) / burst
	b.ReportMetric(float64(b.N)/drained.Seconds(), "datagrams/s")
	// Allocations of the reader only: b.N datagrams and the plugs.
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N+rounds), "allocs/datagram")
	b.ReportMetric(float64(burst), "burst")
}

// BenchmarkUDPRead measures a UDP listener's reader draining its socket:
// datagrams read one at a time and in batches, handed to the Handler or
// refused by Admit (what a flood guard does to a banned source).
func BenchmarkUDPRead(b *testing.B) {
	msg := []byte(benchInvite)
	for _, batch := range []int{1, DefaultReadBatch} {
		b.Run(fmt.Sprintf("batch=%d/deliver", batch), func(b *testing.B) { benchUDPDrain(b, batch, false, msg) })
		b.Run(fmt.Sprintf("batch=%d/admit-refuses", batch), func(b *testing.B) { benchUDPDrain(b, batch, true, msg) })
	}
}

// BenchmarkUDPWriteParallel: datagrams sent through one listener's
// socket from several goroutines at once, as the server's workers and
// timers do, to a socket nobody reads (the kernel drops what overflows
// its buffer; the sender's cost is the same).
func BenchmarkUDPWriteParallel(b *testing.B) {
	m := New(Config{}, HandlerFunc(func(*Packet) {}))
	defer m.Close()
	a, err := m.Listen(UDP, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	dst := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	local := addrPortOf(a)
	msg := make([]byte, 600)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := m.WriteTo(UDP, local, dst, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
