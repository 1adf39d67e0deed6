package transport

import (
	"bufio"
	"io"
	"net"
	"testing"
)

// BenchmarkWSMessage measures one request and its reply through a
// Manager: a client sends a REGISTER and waits for the 200 the Handler
// sends back on the connection (Conn.Send, as the server's workers do).
// WS carries them as one text message each; TCP, the baseline, as
// Content-Length-framed bytes. The clients are hand-written, frames
// prepared ahead, so that the allocations counted are the server's.
func BenchmarkWSMessage(b *testing.B) {
	reply := []byte(wsOK)
	for _, proto := range []string{WS, TCP} {
		b.Run(proto, func(b *testing.B) {
			m := New(Config{}, HandlerFunc(func(p *Packet) { _ = p.Conn.Send(reply) }))
			defer m.Close()
			a, err := m.Listen(proto, "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addr := addrPortOf(a)
			var (
				c    net.Conn
				r    io.Reader
				req  []byte
				resp []byte
			)
			if proto == WS {
				h := upgraded(b, addr)
				c, r = h.conn, h.br
				req = wsFrame(bitFin|opText, true, []byte(wsRegister))
				resp = make([]byte, 2+len(reply)) // an unmasked frame under 126 bytes
			} else {
				c, err = net.Dial("tcp", addr.String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				r = bufio.NewReader(c)
				req = []byte(wsRegister)
				resp = make([]byte, len(reply))
			}
			roundTrip := func() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, resp); err != nil {
					b.Fatal(err)
				}
			}
			roundTrip()
			if got := string(resp[len(resp)-len(reply):]); got != wsOK {
				b.Fatalf("reply %q", got)
			}
			b.SetBytes(int64(len(wsRegister)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				roundTrip()
			}
		})
	}
}
