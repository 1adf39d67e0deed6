package transport

import (
	"errors"
	"io"
	"sync"
	"testing"
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
