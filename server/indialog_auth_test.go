package server

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// TestInDialogAuthNeedsOurRoute: a To tag alone does not exempt a
// request from the proxy's challenge (RFC 3261 §22.3); only a request
// that came along a route set this server recorded does. Without that, a
// forged "in-dialog" INVITE naming one of our users in From reached any
// route unauthenticated (toll fraud).
func TestInDialogAuthNeedsOurRoute(t *testing.T) {
	srv := startServer(t, Config{Domains: []string{"example.test"}})
	a := srv.addr(t, "UDP", false)
	sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	target := "sip:+19005550100@" + sink.LocalAddr().String()
	inDialog := func(method, route string) string {
		msg := request(method, target, "c.invalid", route)
		return strings.Replace(msg, "To: <"+target+">", "To: <"+target+">;tag=forged", 1)
	}
	forwarded := func() *sip.Request {
		buf := make([]byte, 65536)
		_ = sink.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := sink.ReadFrom(buf)
		if err != nil {
			return nil
		}
		m, err := sip.Parse(buf[:n])
		if err != nil {
			t.Fatalf("forwarded request does not parse: %v", err)
		}
		req, _ := m.(*sip.Request)
		return req
	}

	for _, method := range []string{"INVITE", "BYE", "MESSAGE"} {
		t.Run(method+" without our Route: 407", func(t *testing.T) {
			res := udpExchange(t, a, inDialog(method, ""), 5*time.Second)
			switch {
			case res == nil:
				t.Fatal("no response, want 407")
			case res.StatusCode != 407:
				t.Fatalf("got %d %s, want 407", res.StatusCode, res.Reason)
			}
			if req := forwarded(); req != nil {
				t.Fatalf("the unauthenticated request was forwarded:\n%s", req)
			}
		})
	}
	t.Run("BYE along our Route: forwarded unchallenged", func(t *testing.T) {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Addr(), 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := inDialog("BYE", "Route: <sip:"+a.String()+";lr>\r\n")
		if _, err := c.WriteToUDPAddrPort([]byte(msg), a); err != nil {
			t.Fatal(err)
		}
		req := forwarded()
		if req == nil || req.Method != sip.BYE || req.To.Tag() != "forged" {
			t.Fatalf("the routed BYE was not forwarded: %v", req)
		}
		if res := readResponse(t, c, 200*time.Millisecond); res != nil && res.StatusCode == 407 {
			t.Fatal("a BYE along our Route was challenged")
		}
	})
	t.Run("ACK without our Route is not challenged", func(t *testing.T) {
		if res := udpExchange(t, a, inDialog("ACK", ""), 300*time.Millisecond); res != nil {
			t.Fatalf("ACK answered with %d", res.StatusCode)
		}
	})
}
