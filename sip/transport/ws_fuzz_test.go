package transport

import (
	"bytes"
	"testing"
	"time"
)

// FuzzWebSocketFrames writes arbitrary bytes to an upgraded WebSocket
// connection, then checks that the server still serves: while that
// connection is still open, a fresh client completes a REGISTER round
// trip through an echoing Handler. Whatever the bytes, the server must
// not crash, block its other connections, or stop accepting. One Manager
// serves every input, so that what one input leaves behind (a stuck
// reader, a slot never freed) fails a later one.
func FuzzWebSocketFrames(f *testing.F) {
	m := New(Config{
		// Generous limits, short timers: inputs come fast, and one that
		// leaves a message half sent must not hold its slot for long.
		MaxConns:          1 << 16,
		MaxConnsPerSource: 1 << 16,
		MessageTimeout:    200 * time.Millisecond,
		DialTimeout:       time.Second,
		WriteTimeout:      time.Second,
	}, HandlerFunc(func(p *Packet) { _ = p.Conn.Send(p.Data) }))
	f.Cleanup(func() { m.Close() })
	a, err := m.Listen(WS, "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	addr := addrPortOf(a)

	text := func(s string) []byte { return wsFrame(bitFin|opText, true, []byte(s)) }
	seeds := [][]byte{
		text(options0),
		text("\r\n\r\n"),
		wsFrame(bitFin|opBinary, true, []byte(invite10)),
		append(wsFrame(opText, true, []byte(options0[:10])), wsFrame(bitFin|opCont, true, []byte(options0[10:]))...),
		append(wsFrame(opText, true, []byte("OPT")), wsFrame(bitFin|opPing, true, []byte("p"))...),
		wsFrame(bitFin|opPing, true, []byte("hello")),
		wsFrame(bitFin|opPong, true, []byte("1")),
		wsFrame(bitFin|opClose, true, closePayload(1000)),
		wsFrame(bitFin|opClose, true, []byte{3}),
		wsFrame(bitFin|opText, false, []byte(options0)),
		wsFrame(bitFin|0x3, true, []byte("x")),
		wsFrame(bitFin|bitRSV1|opText, true, []byte(options0)),
		wsFrame(bitFin|opPing, true, make([]byte, 126)),
		wsFrame(bitFin|opCont, true, []byte(options0)),
		// A frame announcing far more than it carries, or than exists.
		{bitFin | opText, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 'x'},
		{bitFin | opText, 0x80 | 126, 0xff, 0xff, 1, 2, 3, 4},
		text(exactly(DefaultMaxMessageSize + 1)),
		bytes.Repeat(text("\r\n\r\n"), 50),
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		bad := upgraded(t, addr)
		_ = bad.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = bad.conn.Write(in) // the server may have closed already

		good := upgraded(t, addr)
		good.write(t, wsFrame(bitFin|opText, true, []byte(wsRegister)))
		op, p, err := readFrame(good.br)
		if err != nil || op != opText || string(p) != wsRegister {
			t.Fatalf("echo %#x %q, %v; want the REGISTER back as text", op, p, err)
		}
	})
}
