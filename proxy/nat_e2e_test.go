package proxy_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/ua"
)

// Phones behind NAT: each writes a Contact nobody can reach (the private
// side of its NAT) and sends
// from its real socket (the NAT's public side). They register, and call
// each other through the proxy: the INVITE reaches the callee over its
// registered flow, and the in-dialog requests (ACK, re-INVITE, BYE, both
// ways) over the flows the proxy's Record-Route token remembers.

// unreachable returns a private address (RFC 1918) and a port: what a
// phone behind a NAT writes in its Via and Contact, which nobody here
// can reach.
func unreachable(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	c.Close()
	return net.JoinHostPort("10.0.0.1", port)
}

func natPhone(t *testing.T, user, proxyAddr, transport string, behave func(*ua.Call)) *phone {
	t.Helper()
	ph := &phone{}
	cfg := ua.Config{User: user, Server: proxyAddr, Transport: transport, Advertise: unreachable(t),
		T1: t1, T2: 8 * t1, T4: 10 * t1, TimerD: 10 * t1}
	if behave != nil {
		cfg.OnCall = func(c *ua.Call) {
			behave(c)
			ph.record(c)
		}
	}
	u, err := ua.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ph.UA = u
	if _, err := u.Register(context.Background()); err != nil {
		t.Fatalf("%s: REGISTER: %v", user, err)
	}
	return ph
}

func TestNATPhones(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, caller, callee string }{
		{"UDP to UDP", "udp", "udp"},
		{"TCP to UDP", "tcp", "udp"},
		{"UDP to TCP", "udp", "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startProxy(t, proxy.Config{})
			addr := func(proto string) string {
				if proto == "tcp" {
					return listenAddr(s, "TCP")
				}
				return proxyAddr(s)
			}
			bob := natPhone(t, "bob@example.test", addr(tc.callee), tc.callee, answerAfter(0))
			alice := natPhone(t, "alice@example.test", addr(tc.caller), tc.caller, nil)

			// The caller hangs up: the ACK reached bob (his 2xx stopped),
			// and so does the BYE, over his flow.
			call, err := alice.Call(ctx, "sip:bob@example.test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := call.ReInvite(ctx, call.LocalSDP()); err != nil {
				t.Errorf("re-INVITE from the caller: %v", err)
			}
			if err := call.Hangup(ctx); err != nil {
				t.Fatalf("BYE from the caller: %v", err)
			}
			waitFor(t, "bob's call to end", func() bool { return len(bob.endings()) == 1 })
			if e := bob.endings()[0]; e != ua.ErrRemoteHangup.Error() {
				t.Errorf("bob's call ended: %s (want the caller's BYE)", e)
			}

			// The callee hangs up: the BYE reaches alice over her flow.
			done := make(chan error, 1)
			bob2 := natPhone(t, "carol@example.test", addr(tc.callee), tc.callee, func(c *ua.Call) {
				_ = c.Answer(c.Context())
				time.Sleep(50 * time.Millisecond)
				done <- c.Hangup(c.Context())
			})
			call, err = alice.Call(ctx, "sip:carol@example.test")
			if err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("BYE from the callee: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the callee's BYE got no answer")
			}
			select {
			case <-call.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the caller's call did not end")
			}
			if err := call.Err(); !errors.Is(err, ua.ErrRemoteHangup) {
				t.Errorf("alice's call ended: %v (want the callee's BYE)", err)
			}
			for _, ph := range []*phone{alice, bob, bob2} {
				_, _ = ph.Unregister(ctx)
			}
			closeAll(t, s, alice, bob, bob2)
		})
	}
}
