package main

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a UA.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestUAUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"ua"}, 2},
		{[]string{"ua", "dance"}, 2},
		{[]string{"ua", "call"}, 2},
		{[]string{"ua", "options"}, 2},
		{[]string{"ua", "answer", "--code", "150"}, 2},
		{[]string{"ua", "call", "--100rel", "maybe", "sip:a@127.0.0.1:9"}, 2},
		{[]string{"ua", "call", "sip:a@127.0.0.1:9", "sip:b@127.0.0.1:9"}, 2},
		{[]string{"ua", "answer", "--register"}, 2},
		{[]string{"ua", "register", "--server", "127.0.0.1:9", "--q", "1.5"}, 1},
		{[]string{"ua", "answer", "--contact", "no-port"}, 1},
		{[]string{"ua", "-h"}, 0},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != tc.code {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args, code, tc.code, errb.String())
		}
	}
}

func freeUDP(t *testing.T) string {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// hlas ua answer and hlas ua call/options/message talk to each other.
func TestUACommands(t *testing.T) {
	addr := freeUDP(t)
	var aout, aerr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"ua", "answer", "--local", addr, "--max-calls", "2", "--t1", "20ms", "--drain", "5s"}, &aout, &aerr)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(aout.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("answer did not start: %s %s", aout.String(), aerr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	target := "sip:hlas@" + addr
	var out, errb bytes.Buffer
	if code := run([]string{"ua", "options", target}, &out, &errb); code != 0 || !strings.Contains(out.String(), "<- 200 OK") {
		t.Errorf("options: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"ua", "message", "--body", "hi there", target}, &out, &errb); code != 0 {
		t.Errorf("message: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"ua", "call", "--duration", "50ms", target}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "<- 180 Ringing\n<- 200 OK\ncall established") {
		t.Errorf("call: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"ua", "call", "--duration", "50ms", target}, &out, &errb); code != 0 {
		t.Errorf("second call: exit %d\n%s", code, out.String())
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("answer exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("answer did not stop after --max-calls")
	}
	a := aout.String()
	if !strings.Contains(a, "<- MESSAGE from sip:hlas@localhost: hi there") || !strings.Contains(a, "calls_handled=2") ||
		!strings.Contains(a, "stats: server_tx=0 client_tx=0 dialogs=0 calls=0") {
		t.Errorf("answer output:\n%s", a)
	}
}

func TestUACallRejected(t *testing.T) {
	addr := freeUDP(t)
	var aout, aerr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"ua", "answer", "--local", addr, "--code", "486", "--max-calls", "1"}, &aout, &aerr)
	}()
	for !strings.Contains(aout.String(), "listening on") {
		time.Sleep(5 * time.Millisecond)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"ua", "call", "sip:hlas@" + addr}, &out, &errb); code != 1 || !strings.Contains(out.String(), "<- 486 Busy Here") {
		t.Errorf("call: exit %d\n%s", code, out.String())
	}
	if code := <-done; code != 0 {
		t.Errorf("answer exit %d", code)
	}
}
