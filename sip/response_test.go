package sip

import (
	"strings"
	"testing"
)

func TestNewResponse(t *testing.T) {
	req := mustRequest(t, invite("v=0\r\n",
		"Via: SIP/2.0/TCP second.example.com;branch=z9hG4bK2;received=192.0.2.2",
		"Record-Route: <sip:p1.example.com;lr>",
		"Contact: <sip:alice@192.0.2.101>",
		"Timestamp: 54",
		"Subject: hello",
		"Content-Type: application/sdp"))
	tests := []struct {
		name      string
		code      int
		reason    string
		wantLine  string
		timestamp bool
	}{
		{"RFC3261 8.2.6.1 100 Trying copies Timestamp", 100, "", "SIP/2.0 100 Trying", true},
		{"RFC3261 8.2.6.2 default reason phrase", 486, "", "SIP/2.0 486 Busy Here", false},
		{"RFC3261 8.2.6.2 given reason phrase", 400, "Bad Request - Missing Call-ID", "SIP/2.0 400 Bad Request - Missing Call-ID", false},
		{"RFC3261 8.2.6.2 200", 200, "", "SIP/2.0 200 OK", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewResponse(req, tt.code, tt.reason)
			out := r.String()
			if !strings.HasPrefix(out, tt.wantLine+"\r\n") {
				t.Errorf("status line: %q", strings.SplitN(out, "\r\n", 2)[0])
			}
			if len(r.Via) != 2 || r.Via[0] != req.Via[0] || r.Via[1] != req.Via[1] {
				t.Errorf("RFC3261 8.2.6.2 Via must equal the request's, in order: %v", r.Via)
			}
			if r.From != req.From || r.To != req.To || r.CallID != req.CallID || r.CSeq != req.CSeq {
				t.Error("RFC3261 8.2.6.2 From, To, Call-ID and CSeq must be copied")
			}
			if got := r.Has("Timestamp"); got != tt.timestamp {
				t.Errorf("Timestamp copied = %v, want %v", got, tt.timestamp)
			}
			if r.Has("Subject") || r.ContentType != "" || r.Body != nil || len(r.Contact) != 0 || r.MaxForwards != -1 {
				t.Errorf("copied more than RFC 3261 8.2.6.2 asks: %#v", r.Header)
			}
			if strings.Contains(out, "Max-Forwards") || !strings.HasSuffix(out, "\r\nContent-Length: 0\r\n\r\n") {
				t.Errorf("written as:\n%s", out)
			}
			checkRoundTrip(t, r)
		})
	}
	t.Run("RFC3261 8.2.6.2 the response owns its Via list", func(t *testing.T) {
		r := NewResponse(req, 200, "")
		r.Via[0].Params = r.Via[0].Params.Set("received", "192.0.2.9")
		if req.Via[0].Received() != "" {
			t.Error("changing the response's Via changed the request's")
		}
	})
}

// TestNewResponseAllocations: a response is one block (response, a Via,
// room for four fields), and the Vias of a proxied request one more.
func TestNewResponseAllocations(t *testing.T) {
	direct := mustRequest(t, invite(""))
	proxied := mustRequest(t, invite("", "Via: SIP/2.0/TCP second.example.com;branch=z9hG4bK2"))
	for _, tc := range []struct {
		name string
		req  *Request
		want float64
	}{
		{"RFC3261 8.2.6.2 one Via", direct, 1},
		{"RFC3261 8.2.6.2 Vias of proxies", proxied, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, func() {
				r := NewResponse(tc.req, 401, "")
				r.Add("Server", "hlas")
				r.Add("WWW-Authenticate", "Digest")
				r.Add("WWW-Authenticate", "Digest")
			}); n != tc.want {
				t.Errorf("%v allocations, want %v", n, tc.want)
			}
		})
	}
	t.Run("RFC3261 8.2.6.2 the response owns its one Via", func(t *testing.T) {
		r := NewResponse(direct, 200, "")
		r.Via[0].Params = r.Via[0].Params.Set("received", "192.0.2.9")
		r.Via = append(r.Via, direct.Via[0])
		if direct.Via[0].Received() != "" || len(direct.Via) != 1 {
			t.Error("changing the response's Via changed the request's")
		}
	})
}

func TestStatusText(t *testing.T) {
	tests := []struct {
		name string
		code int
		want string
	}{
		{"RFC3261 21.1.1", 100, "Trying"},
		{"RFC3261 21.1.2", 180, "Ringing"},
		{"RFC3261 21.2.1", 200, "OK"},
		{"RFC3261 21.4.5", 404, "Not Found"},
		{"RFC3261 21.4.24", 483, "Too Many Hops"},
		{"RFC3261 21.5.7", 505, "Version Not Supported"},
		{"RFC3261 21.6.2", 603, "Decline"},
		{"RFC3261 21.4 unknown 4xx", 499, "Client Error"},
		{"RFC3261 21.5 unknown 5xx", 599, "Server Error"},
		{"RFC3261 21.6 unknown 6xx", 699, "Global Failure"},
		{"RFC3261 21.3 unknown 3xx", 399, "Redirected"},
		{"RFC3261 21 out of range", 700, "Unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StatusText(tt.code); got != tt.want {
				t.Errorf("StatusText(%d) = %q, want %q", tt.code, got, tt.want)
			}
		})
	}
}

func TestAddToTag(t *testing.T) {
	req, err := ParseString("INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
		"From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	r := req.(*Request)
	trying := NewResponse(r, 100, "")
	trying.AddToTag()
	if trying.To.Tag() != "" {
		t.Errorf("100 got a To tag: RFC 3261 §8.2.6.2 leaves it out")
	}
	busy := NewResponse(r, 486, "")
	busy.AddToTag()
	tag := busy.To.Tag()
	if tag == "" {
		t.Fatal("486 without a To tag")
	}
	busy.AddToTag()
	if busy.To.Tag() != tag {
		t.Error("a second AddToTag replaced the tag")
	}
}
