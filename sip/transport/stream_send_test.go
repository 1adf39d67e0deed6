package transport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSendRacesClose: Sends racing the Manager's Close either queue their
// message or fail with ErrConnClosed, and Close still waits for the
// writer goroutines they start (goleak checks none is left).
func TestSendRacesClose(t *testing.T) {
	for range 20 {
		c, peer := dialPeer(t)
		go func() { _, _ = io.Copy(io.Discard, peer) }()
		var wg sync.WaitGroup
		errs := make(chan error, 4*100)
		for range 4 {
			wg.Go(func() {
				for range 100 {
					if err := c.Send([]byte(options0)); err != nil {
						errs <- err
					}
				}
			})
		}
		if err := c.m.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, ErrConnClosed) {
				t.Fatalf("Send: %v", err)
			}
		}
		if err := c.Send([]byte(options0)); !errors.Is(err, ErrConnClosed) {
			t.Fatalf("Send after Close: %v", err)
		}
	}
}

// TestSendToDeadPeer: a peer that neither reads nor closes (a host gone
// from the network) stalls the writer goroutine, which gives up after
// WriteTimeout, long before the queue would fill: the connection closes,
// what was queued is dropped, the writer goroutine ends (goleak checks it
// is gone), and later Sends fail with ErrConnClosed.
func TestSendToDeadPeer(t *testing.T) {
	reasons := make(closeReasons, 16)
	m := newManager(t, Config{WriteTimeout: 50 * time.Millisecond, Logger: slog.New(reasons)}, nil)
	c, peer := dialPeerFrom(t, m)
	// Small socket buffers on both sides, so that what the kernels hold is
	// far below what is sent and far below the queue's bounds.
	_ = peer.(*net.TCPConn).SetReadBuffer(4096)
	_ = c.raw.(*net.TCPConn).SetWriteBuffer(4096)

	msg := []byte(strings.Repeat("x", 32<<10))
	const n = 64 // 2 MiB: the queue takes 4 MiB
	for i := range n {
		if err := c.Send(msg); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	select {
	case <-c.Done():
	case <-time.After(failsafe):
		t.Fatal("the connection to a dead peer stayed open")
	}
	select {
	case why := <-reasons:
		if !strings.HasPrefix(why, "write failed") {
			t.Fatalf("closed for %q, want a failed write", why)
		}
	case <-time.After(failsafe):
		t.Fatal("no close logged")
	}
	waitFor(t, "the writer goroutine to end", func() bool {
		c.qmu.Lock()
		defer c.qmu.Unlock()
		return !c.writing
	})
	c.qmu.Lock()
	left, queued := len(c.queue), c.qbytes
	c.qmu.Unlock()
	if left != 0 || queued != 0 {
		t.Errorf("%d messages, %d bytes still queued on a closed connection", left, queued)
	}
	if s := m.Stats().TCP; s.WriteErrors != 1 || s.ConnsOpen != 0 {
		t.Errorf("stats %+v", s)
	}
	if err := c.Send(msg); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Send after the failed write: %v", err)
	}
}
