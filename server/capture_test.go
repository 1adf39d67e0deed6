package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hlas-voip/hlas/capture/hep"
)

// hepCollector is a UDP socket that decodes what arrives, as Homer would.
type hepCollector struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []hep.Packet
	bad  int
	more chan struct{}
}

func startCollector(t *testing.T) *hepCollector {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := &hepCollector{conn: conn, more: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			p, err := hep.Decode(append([]byte(nil), buf[:n]...))
			c.mu.Lock()
			if err != nil {
				c.bad++
			} else {
				c.got = append(c.got, p)
			}
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return c
}

// find waits for a packet that match accepts; the deadline only keeps a
// broken test from hanging.
func (c *hepCollector) find(t *testing.T, what string, match func(hep.Packet) bool) hep.Packet {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, p := range c.got {
			if match(p) {
				c.mu.Unlock()
				return p
			}
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("collector: no HEP packet for %s", what)
		}
	}
}

func TestCaptureHEP(t *testing.T) {
	col := startCollector(t)
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	srv := startServer(t, Config{
		Listen:  []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tls:127.0.0.1:0", "ws:127.0.0.1:0"},
		TLSCert: cert, TLSKey: key,
		Capture: CaptureConfig{HEP: "udp:" + col.conn.LocalAddr().String(), NodeID: 2001, Password: "hep-secret", Queue: 64},
	})

	// exchange sends an OPTIONS and returns the client's address and the
	// request sent.
	exchanges := map[string]func(t *testing.T, server netip.AddrPort) (netip.AddrPort, string){
		"UDP": func(t *testing.T, server netip.AddrPort) (netip.AddrPort, string) {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := request("OPTIONS", "sip:"+server.String(), "client.invalid", "")
			if _, err := c.WriteToUDPAddrPort([]byte(req), server); err != nil {
				t.Fatal(err)
			}
			if res := readResponse(t, c, 5*time.Second); res == nil || res.StatusCode != 200 {
				t.Fatalf("response %v", res)
			}
			return c.LocalAddr().(*net.UDPAddr).AddrPort(), req
		},
		"TCP": func(t *testing.T, server netip.AddrPort) (netip.AddrPort, string) {
			conn, err := net.Dial("tcp", server.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := request("OPTIONS", "sip:"+server.String()+";transport=tcp", "client.invalid", "")
			if res := streamExchange(t, conn, bufio.NewReader(conn), req); res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			return conn.LocalAddr().(*net.TCPAddr).AddrPort(), req
		},
		"TLS": func(t *testing.T, server netip.AddrPort) (netip.AddrPort, string) {
			conn, err := tls.Dial("tcp", server.String(), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := request("OPTIONS", "sips:"+server.String(), "client.invalid", "")
			if res := streamExchange(t, conn, bufio.NewReader(conn), req); res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			return conn.LocalAddr().(*net.TCPAddr).AddrPort(), req
		},
		"WS": func(t *testing.T, server netip.AddrPort) (netip.AddrPort, string) {
			// The client's address, from its dialer: the WebSocket hides it.
			var client netip.AddrPort
			hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err == nil {
					client = c.LocalAddr().(*net.TCPAddr).AddrPort()
				}
				return c, err
			}}}
			c, _, err := dialWS(t, "ws://"+server.String(), &websocket.DialOptions{HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			req := strings.Replace(request("OPTIONS", "sip:"+server.String()+";transport=ws", "client.invalid", ""),
				"SIP/2.0/UDP", "SIP/2.0/WS", 1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
				t.Fatal(err)
			}
			_, data, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), "SIP/2.0 200 ") {
				t.Fatalf("response %q", data)
			}
			return client, req
		},
	}
	ipProto := map[string]uint8{"UDP": 17, "TCP": 6, "TLS": 6, "WS": 6}
	for _, proto := range []string{"UDP", "TCP", "TLS", "WS"} {
		t.Run(proto, func(t *testing.T) {
			server := srv.addr(t, proto, false)
			client, req := exchanges[proto](t, server)
			callID := header(req, "Call-ID")

			in := col.find(t, "the request in", func(p hep.Packet) bool { return string(p.Payload) == req })
			if in.Src != client || in.Dst != server {
				t.Errorf("request captured from %s to %s, want %s to %s", in.Src, in.Dst, client, server)
			}
			out := col.find(t, "the 200 out", func(p hep.Packet) bool {
				return strings.HasPrefix(string(p.Payload), "SIP/2.0 200 ") && header(string(p.Payload), "Call-ID") == callID
			})
			if out.Src != server || out.Dst != client {
				t.Errorf("response captured from %s to %s, want %s to %s", out.Src, out.Dst, server, client)
			}
			for _, p := range []hep.Packet{in, out} {
				if p.IPProtocol != ipProto[proto] || p.ProtoType != hep.ProtoSIP || p.NodeID != 2001 || p.Password != "hep-secret" {
					t.Errorf("ip protocol %d, protocol type %d, node %d, password %q", p.IPProtocol, p.ProtoType, p.NodeID, p.Password)
				}
				if d := time.Since(p.Time); d < 0 || d > time.Hour {
					t.Errorf("timestamp %v is not about now", p.Time)
				}
			}
			if out.Time.Before(in.Time) {
				t.Errorf("response stamped %v, before its request %v", out.Time, in.Time)
			}
		})
	}

	col.mu.Lock()
	got, bad := len(col.got), col.bad
	col.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d undecodable HEP packets", bad)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	st := srv.capture.Stats()
	if st.Sent < uint64(got) || st.QueueFull != 0 || st.SendErrors != 0 {
		t.Errorf("sender stats %+v with %d packets received", st, got)
	}
	if v := counterValue(t, srv, "hlas_capture_hep_sent_total", ""); v != float64(st.Sent) {
		t.Errorf("hlas_capture_hep_sent_total = %v, want %d", v, st.Sent)
	}
	for _, reason := range []string{"queue_full", "send_error"} {
		if v := counterValue(t, srv, "hlas_capture_hep_dropped_total", reason); v != 0 {
			t.Errorf("hlas_capture_hep_dropped_total{reason=%q} = %v", reason, v)
		}
	}
}

// header returns the value of the first header called name in msg.
func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// counterValue reads a counter of the server's registry, by its reason
// label when reason is not empty; it fails the test when there is none.
func counterValue(t *testing.T, srv *Server, name, reason string) float64 {
	t.Helper()
	mfs, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if reason == "" || (l.GetName() == "reason" && l.GetValue() == reason) {
					return m.GetCounter().GetValue()
				}
			}
			if reason == "" {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{reason=%q}", name, reason)
	return 0
}

func TestCaptureConfig(t *testing.T) {
	tests := []struct {
		name string
		c    CaptureConfig
		ok   bool
	}{
		{"off", CaptureConfig{}, true},
		{"IPv4", CaptureConfig{HEP: "udp:127.0.0.1:9060", NodeID: 2001}, true},
		{"IPv6", CaptureConfig{HEP: "udp:[::1]:9060"}, true},
		{"host name", CaptureConfig{HEP: "udp:homer.example.com:9060", Queue: 10}, true},
		{"tcp is not supported", CaptureConfig{HEP: "tcp:127.0.0.1:9060"}, false},
		{"no scheme", CaptureConfig{HEP: "127.0.0.1:9060"}, false},
		{"no port", CaptureConfig{HEP: "udp:127.0.0.1"}, false},
		{"no host", CaptureConfig{HEP: "udp::9060"}, false},
		{"negative queue", CaptureConfig{Queue: -1}, false},
		{"queue over 1Mi", CaptureConfig{HEP: "udp:127.0.0.1:9060", Queue: 1<<20 + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.validate()
			if (err == nil) != tt.ok {
				t.Errorf("validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "capture.") {
				t.Errorf("error %q does not name the field", err)
			}
		})
	}
}

func TestCaptureOffHasNoMetrics(t *testing.T) {
	srv := startServer(t, Config{})
	if srv.capture != nil {
		t.Fatal("capture on without capture.hep")
	}
	mfs, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "hlas_capture_") {
			t.Errorf("metric %s without capture", mf.GetName())
		}
	}
}
