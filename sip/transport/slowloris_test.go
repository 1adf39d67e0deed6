package transport

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// closeReasons is a slog.Handler collecting the reasons logged as
// connections close.
type closeReasons chan string

func (closeReasons) Enabled(context.Context, slog.Level) bool { return true }

func (r closeReasons) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "connection closed" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "reason" {
			select {
			case r <- a.Value.String():
			default:
			}
		}
		return true
	})
	return nil
}

func (r closeReasons) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r closeReasons) WithGroup(string) slog.Handler      { return r }

// TestSlowloris: a peer dribbling a header section that never ends, a
// byte at a time well within the idle timeout, is cut off by the message
// timeout.
func TestSlowloris(t *testing.T) {
	for _, proto := range []string{TCP, TLS} {
		t.Run(proto, func(t *testing.T) {
			serverTLS, clientTLS := testTLS(t)
			reasons := make(closeReasons, 16)
			m := newManager(t, Config{
				IdleTimeout:    time.Hour, // never the reason here
				MessageTimeout: 50 * time.Millisecond,
				TLSConfig:      serverTLS,
				Logger:         slog.New(reasons),
			}, nil)
			addr := listen(t, m, proto, "127.0.0.1")
			client := dialClient(t, proto, addr, clientTLS)
			pingPong(t, client)

			stop := make(chan struct{})
			dribbling := make(chan struct{})
			go func() {
				defer close(dribbling)
				start := "INVITE sip:bob@example.com SIP/2.0\r\nX-Slow: "
				for i := 0; ; i++ {
					b := byte('a')
					if i < len(start) {
						b = start[i]
					}
					if _, err := client.Write([]byte{b}); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
			n, err := client.Read(make([]byte, 1))
			close(stop)
			<-dribbling
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %d bytes, %v: want the connection closed by the server", n, err)
			}
			waitFor(t, "the connection to close", func() bool { return protoStats(m.Stats(), proto).ConnsOpen == 0 })
			if s := protoStats(m.Stats(), proto); s.ConnsIdleClosed != 1 || s.PacketsIn != 0 {
				t.Fatalf("stats %+v", s)
			}
			select {
			case why := <-reasons:
				if !strings.HasPrefix(why, "message timeout") {
					t.Fatalf("closed for %q, want the message timeout", why)
				}
			case <-time.After(failsafe):
				t.Fatal("no close logged")
			}
		})
	}
}

// TestMessageTimeoutPerMessage: keep-alives between messages do not start
// the message clock, and each message of a steady pipelined stream, where
// every read ends inside the next message, gets a clock of its own.
func TestMessageTimeoutPerMessage(t *testing.T) {
	const timeout = 100 * time.Millisecond
	h := newSink()
	m := newManager(t, Config{IdleTimeout: time.Hour, MessageTimeout: timeout}, h)
	addr := listen(t, m, TCP, "127.0.0.1")
	client := dialClient(t, TCP, addr, nil)

	// Each phase lasts several message timeouts; each step takes far less.
	for start := time.Now(); time.Since(start) < 3*timeout; time.Sleep(2 * time.Millisecond) {
		pingPong(t, client)
	}
	half := len(options0) / 2
	write := func(s string) {
		t.Helper()
		if _, err := client.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write(options0[:half])
	sent := 1
	for start := time.Now(); time.Since(start) < 3*timeout; time.Sleep(2 * time.Millisecond) {
		write(options0[half:] + options0[:half])
		sent++
	}
	write(options0[half:])
	for range sent {
		if p := h.next(t); string(p.Data) != options0 {
			t.Fatalf("got %q", p.Data)
		}
	}
	pingPong(t, client)
	if s := m.Stats().TCP; s.ConnsIdleClosed != 0 || s.ConnsOpen != 1 {
		t.Fatalf("stats %+v", s)
	}
}
