package event

import (
	"strings"
	"testing"
)

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		in, name, id string
		ok           bool
	}{
		{"presence", "presence", "", true},
		{" presence.winfo ", "presence.winfo", "", true},
		{"presence;id=abc", "presence", "abc", true},
		{"dialog ; id = 7 ; other=x", "dialog", "7", true},
		{"message-summary;foo", "message-summary", "", true},
		{"", "", "", false},
		{";id=1", "", "", false},
		{"pres ence", "", "", false},
		{"presence;id=", "", "", false},
		{"presence;id=a b", "", "", false},
	} {
		name, id, ok := parseEvent(tc.in)
		if name != tc.name || id != tc.id || ok != tc.ok {
			t.Errorf("parseEvent(%q) = %q, %q, %v; want %q, %q, %v", tc.in, name, id, ok, tc.name, tc.id, tc.ok)
		}
	}
}

func TestParseExpires(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"3600", 3600, true},
		{" 0 ", 0, true},
		{"4294967295", 1<<32 - 1, true},
		{"4294967296", 1<<32 - 1, true},
		{"99999999999999999999999999", 1<<32 - 1, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1h", 0, false},
		{"Thu, 01 Dec 1994 16:00:00 GMT", 0, false},
	} {
		got, ok := parseExpires(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseExpires(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestNegotiate(t *testing.T) {
	offer := []string{"application/pidf+xml", "application/xpidf+xml", "text/plain"}
	for _, tc := range []struct {
		name   string
		ranges []string
		want   string
	}{
		{"no Accept: the package default", nil, "application/pidf+xml"},
		{"exact", []string{"application/xpidf+xml"}, "application/xpidf+xml"},
		{"case-insensitive", []string{"Application/PIDF+XML"}, "application/pidf+xml"},
		{"all", []string{"*/*"}, "application/pidf+xml,application/xpidf+xml,text/plain"},
		{"type wildcard", []string{"application/*"}, "application/pidf+xml,application/xpidf+xml"},
		{"package order, not the watcher's", []string{"text/plain", "application/pidf+xml"}, "application/pidf+xml,text/plain"},
		{"q=0 refuses despite a wildcard", []string{"*/*", "application/pidf+xml;q=0"}, "application/xpidf+xml,text/plain"},
		{"q=0.000", []string{"text/plain;q=0.000"}, ""},
		{"q=0.5 accepts", []string{"text/plain;q=0.5"}, "text/plain"},
		{"none", []string{"application/sdp", "garbage"}, ""},
	} {
		got := strings.Join(negotiate(tc.ranges, offer), ",")
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzHeaders feeds the header parsers arbitrary values: they never panic,
// and what they accept is well formed.
func FuzzHeaders(f *testing.F) {
	for _, s := range []string{"presence;id=1", "3600", "text/plain;q=0, */*", "a/b;q=0.0;x", ";;;", "\x00", "presence;id=\"x\""} {
		f.Add(s)
	}
	offer := []string{"application/pidf+xml", "text/plain"}
	f.Fuzz(func(t *testing.T, s string) {
		if name, id, ok := parseEvent(s); ok {
			if !isToken(name) || (id != "" && !isToken(id)) {
				t.Fatalf("parseEvent(%q) accepted %q %q", s, name, id)
			}
		}
		if n, ok := parseExpires(s); ok && n > maxExpiresHeader {
			t.Fatalf("parseExpires(%q) = %d", s, n)
		}
		got := negotiate(strings.Split(s, ","), offer)
		for _, g := range got {
			if g != offer[0] && g != offer[1] {
				t.Fatalf("negotiate chose %q", g)
			}
		}
	})
}

// FuzzSubscribe hands the Notifier SUBSCRIBEs with arbitrary Event,
// Expires, Accept and Contact values: no panic, one response each.
func FuzzSubscribe(f *testing.F) {
	f.Add("presence;id=1", "3600", "application/presence+xml", "<sip:a@192.0.2.1>")
	f.Add("presence", "0", "*/*", "<sip:a@[2001:db8::1]:5070;transport=tcp>")
	f.Add("dialog", "x", "", "*")
	f.Fuzz(func(t *testing.T, event, expires, accept, contact string) {
		for _, s := range []string{event, expires, accept, contact} {
			if strings.ContainsAny(s, "\r\n") {
				return
			}
		}
		r := newRig(t, Config{}, nil)
		r.snd.auto = 200
		raw := "SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\n" +
			"From: <sip:alice@example.com>;tag=f\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 SUBSCRIBE\r\n" +
			"Contact: " + contact + "\r\nEvent: " + event + "\r\nExpires: " + expires + "\r\nAccept: " + accept + "\r\n\r\n"
		m, err := parseReq(raw)
		if err != nil {
			return
		}
		tx := &fakeTx{}
		r.n.HandleSUBSCRIBE(t.Context(), tx, m, r.flow, "alice@example.com", "bob@example.com")
		if len(tx.res) != 1 {
			t.Fatalf("%d responses", len(tx.res))
		}
	})
}
