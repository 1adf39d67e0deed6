package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// TestSendKeepsOrder: queued messages arrive whole and in order.
func TestSendKeepsOrder(t *testing.T) {
	c, peer := dialPeer(t)
	for i := range 100 {
		if err := c.Send([]byte(fmt.Sprintf("message %d\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(peer)
	for i := range 100 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("message %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
	}
}

// TestSendToPeerThatDoesNotRead: Send never waits on the peer; once the
// queue is full the connection is dropped.
func TestSendToPeerThatDoesNotRead(t *testing.T) {
	c, _ := dialPeer(t) // the peer never reads
	big := []byte(strings.Repeat("x", 60000))
	var sendErr error
	for i := 0; i < 10*sendQueueBytes/len(big) && sendErr == nil; i++ {
		sendErr = c.Send(big)
	}
	if !errors.Is(sendErr, ErrSendQueueFull) && !errors.Is(sendErr, ErrConnClosed) {
		t.Fatalf("Send kept accepting data for a peer that never reads: %v", sendErr)
	}
	<-c.Done()
}

// dialPeer connects a Manager to a plain TCP listener and returns the
// Manager's connection and the peer's end; all are closed with the test.
func dialPeer(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	m := New(Config{}, nil)
	t.Cleanup(func() { m.Close() })
	return dialPeerFrom(t, m)
}

// dialPeerFrom is dialPeer from a Manager of the caller's.
func dialPeerFrom(t *testing.T, m *Manager) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := m.Dial(context.Background(), TCP, netip.AddrPort{}, netip.MustParseAddrPort(ln.Addr().String()), "")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return c, peer
}
