//go:build interop

package interop

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// discardSentBy is a Via sent-by nobody listens on (the discard port), used
// to prove that a response followed rport and the source address rather
// than the sent-by; it stays on loopback either way.
const discardSentBy = "127.0.0.1:9"

// exchangeTimeout bounds the wait for the response to one request.
const exchangeTimeout = 3 * time.Second

// TestOPTIONS sends a hand-built OPTIONS to the server's own address over
// raw sockets and checks the 200 OK field by field.
func TestOPTIONS(t *testing.T) {
	srv := startServer(t)
	tests := []struct {
		name      string
		network   string // "udp" or "tcp"
		server    string
		rport     bool
		ownSentBy bool // Via sent-by is the real local address, else discardSentBy
	}{
		// RFC 3261 §18.2.2: without rport a UDP response goes to the
		// sent-by, which here is the socket the request came from.
		{"RFC3261_18.2.2/udp/sent-by", "udp", srv.UDP4, false, true},
		// RFC 3581 §4: with an empty rport the server must fill in rport and
		// received and answer to the source address and port, whatever the
		// sent-by says.
		{"RFC3581_4/udp/rport", "udp", srv.UDP4, true, false},
		{"RFC3581_4/udp6/rport", "udp", srv.UDP6, true, false},
		// RFC 3261 §18.2.2: over TCP the response uses the request's
		// connection; rport and received are stamped all the same.
		{"RFC3261_18.2.2/tcp/sent-by", "tcp", srv.TCP4, false, true},
		{"RFC3581_4/tcp/rport", "tcp", srv.TCP4, true, false},
		{"RFC3581_4/tcp6/rport", "tcp", srv.TCP6, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.server == "" {
				t.Skip("no IPv6 loopback on this host")
			}
			req := optionsRequest{Target: tt.server, RPort: tt.rport, SentBy: discardSentBy}
			if host, _, _ := net.SplitHostPort(tt.server); strings.Contains(host, ":") {
				req.SentBy = "[::1]:9"
			}
			var resp *response
			var local *net.UDPAddr
			if tt.network == "udp" {
				resp, local = exchangeUDP(t, tt.server, &req, tt.ownSentBy)
			} else {
				resp, local = exchangeTCP(t, tt.server, &req, tt.ownSentBy)
			}
			if resp == nil {
				if tt.rport && tt.network == "udp" {
					t.Fatalf("no response within %v: with rport in the Via hlas must answer to the source port (RFC 3581 §4), not to the sent-by %s", exchangeTimeout, req.SentBy)
				}
				t.Fatalf("no response within %v", exchangeTimeout)
			}
			checkOptionsOK(t, &req, resp, tt.network == "tcp")
			checkVia(t, &req, resp, local)
		})
	}
}

// checkOptionsOK checks a response to req: a 200 that echoes the request's
// identifiers (RFC 3261 §8.2.6.2) and describes the server's capabilities
// (RFC 3261 §11.2).
func checkOptionsOK(t *testing.T, req *optionsRequest, resp *response, stream bool) {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("status line %q, want 200 OK", resp.StartLine)
	}
	for _, name := range []string{"Allow", "Accept", "Supported", "Server"} {
		if !resp.Has(name) {
			t.Errorf("200 OK to OPTIONS lacks %s (RFC 3261 §11.2)", name)
		}
	}
	if allow := resp.Get("allow"); resp.Has("allow") && !containsToken(allow, "OPTIONS") {
		t.Errorf("Allow: %s does not list OPTIONS, which the server just answered", allow)
	}
	if got := resp.Get("call-id"); got != req.CallID {
		t.Errorf("Call-ID %q, want the request's %q", got, req.CallID)
	}
	if got := resp.Get("cseq"); strings.Join(strings.Fields(got), " ") != "1 OPTIONS" {
		t.Errorf("CSeq %q, want the request's \"1 OPTIONS\"", got)
	}
	if got := resp.Get("from"); !strings.Contains(got, "tag="+req.FromTag) {
		t.Errorf("From %q lost the request's tag %q", got, req.FromTag)
	}
	if got := resp.Get("to"); !strings.Contains(strings.ToLower(got), ";tag=") {
		t.Errorf("To %q has no tag; a UAS adds one to its responses (RFC 3261 §8.2.6.2)", got)
	}
	if vias := resp.Values("via"); len(vias) != 1 || strings.Contains(vias[0], ",") {
		t.Errorf("Via %q, want exactly the request's one Via", vias)
	}
	if stream && !resp.Has("content-length") {
		t.Errorf("response over a stream transport lacks Content-Length (RFC 3261 §18.3)")
	}
}

// checkVia checks the response's Via: the request's branch and sent-by, and
// received/rport as RFC 3261 §18.2.1 and RFC 3581 §4 require for a request
// that came from local.
func checkVia(t *testing.T, req *optionsRequest, resp *response, local *net.UDPAddr) {
	t.Helper()
	sentBy, params := viaParams(resp)
	if sentBy != req.SentBy {
		t.Errorf("Via sent-by %q, want the request's %q", sentBy, req.SentBy)
	}
	if params["branch"] != req.Branch {
		t.Errorf("Via branch %q, want the request's %q", params["branch"], req.Branch)
	}
	received, hasReceived := params["received"]
	rport, hasRPort := params["rport"]
	if req.RPort {
		// RFC 3581 §4: received is added even when equal to the sent-by host.
		if !hasReceived {
			t.Errorf("Via %q lacks received; with rport it is mandatory (RFC 3581 §4)", resp.Get("via"))
		}
		if rport != strconv.Itoa(local.Port) {
			t.Errorf("Via %q: rport=%q, want the source port %d (RFC 3581 §4)", resp.Get("via"), rport, local.Port)
		}
	} else if hasRPort {
		t.Errorf("Via %q has rport although the request did not ask for it", resp.Get("via"))
	}
	if hasReceived {
		// RFC 5118 §4.5 allows the IPv6 address with or without brackets.
		ip := net.ParseIP(strings.Trim(received, "[]"))
		if ip == nil || !ip.Equal(local.IP) {
			t.Errorf("Via received=%q, want the source address %s (RFC 3261 §18.2.1)", received, local.IP)
		}
	}
}

// containsToken reports whether the comma-separated list has tok (any case).
func containsToken(list, tok string) bool {
	for _, item := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(item), tok) {
			return true
		}
	}
	return false
}

// exchangeUDP sends req over UDP to server from a fresh socket and returns
// the response (nil if none came within exchangeTimeout) and the socket's
// address. With ownSentBy the Via sent-by is set to that address.
func exchangeUDP(t *testing.T, server string, req *optionsRequest, ownSentBy bool) (*response, *net.UDPAddr) {
	t.Helper()
	dst, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: dst.IP})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr)
	req.Transport = "UDP"
	if ownSentBy {
		req.SentBy = local.String()
	}
	if _, err := conn.WriteToUDP(req.Bytes(), dst); err != nil {
		t.Fatal(err)
	}
	resp, err := readUDPResponse(conn, time.Now().Add(exchangeTimeout), func(r *response) bool { return r.Get("call-id") == req.CallID })
	if err != nil {
		t.Fatal(err)
	}
	return resp, local
}

// exchangeTCP is exchangeUDP over a fresh TCP connection; the local
// address is returned as a UDPAddr for uniform checks.
func exchangeTCP(t *testing.T, server string, req *optionsRequest, ownSentBy bool) (*response, *net.UDPAddr) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", server, exchangeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tcpLocal := conn.LocalAddr().(*net.TCPAddr)
	req.Transport = "TCP"
	if ownSentBy {
		req.SentBy = tcpLocal.String()
	}
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := readStreamResponse(conn, time.Now().Add(exchangeTimeout))
	if err != nil {
		t.Fatal(err)
	}
	return resp, &net.UDPAddr{IP: tcpLocal.IP, Port: tcpLocal.Port}
}
