package tpcc

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/media/sdpedit"
	"github.com/hlas-voip/hlas/ua"
)

func sdpOf(ls ...string) []byte { return []byte(strings.Join(ls, "\r\n") + "\r\n") }

var phone = sdpOf(
	"v=0",
	"o=phone 123 7 IN IP4 192.0.2.10",
	"s=call",
	"c=IN IP4 192.0.2.10",
	"t=0 0",
	"m=audio 4000 RTP/AVP 0 8 101",
	"a=rtpmap:0 PCMU/8000",
	"a=rtpmap:8 PCMA/8000",
	"a=rtpmap:101 telephone-event/8000",
	"a=fmtp:101 0-16",
	"a=ptime:20",
	"a=sendrecv",
	"m=video 0 RTP/AVP 96",
	"a=rtpmap:96 H264/90000",
	"m=image 4002 udptl t38",
	"a=T38FaxVersion:0",
)

func TestHoldAnswer(t *testing.T) {
	o := &origin{sessID: 42, addr: netip.MustParseAddr("127.0.0.1")}
	got, err := holdAnswer(phone, o)
	if err != nil {
		t.Fatal(err)
	}
	want := sdpOf(
		"v=0",
		"o=hlas 42 1 IN IP4 127.0.0.1",
		"s=-",
		"c=IN IP4 0.0.0.0",
		"t=0 0",
		"m=audio 9 RTP/AVP 0 8 101",
		"a=inactive",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"m=video 0 RTP/AVP 96",
		"m=image 9 udptl t38",
		"a=inactive",
	)
	if !bytes.Equal(got, want) {
		t.Errorf("RFC 3725 §4.4 hold answer:\n%s\nwant\n%s", got, want)
	}
	d, err := sdpedit.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range d.Streams {
		if s.Port != 0 && !s.OnHold() {
			t.Errorf("stream %d not held", i)
		}
	}
	v6 := bytes.ReplaceAll(phone, []byte("IN IP4 192.0.2.10"), []byte("IN IP6 2001:db8::1"))
	if got, err := holdAnswer(v6, o); err != nil || !bytes.Contains(got, []byte("c=IN IP6 ::\r\n")) || !bytes.Contains(got, []byte("o=hlas 42 2 ")) {
		t.Errorf("IPv6 hold answer %v:\n%s", err, got)
	}
	for name, bad := range map[string][]byte{
		"empty":      nil,
		"no m-line":  sdpOf("v=0", "o=x 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"),
		"not SDP":    []byte("hello"),
		"bad m-line": sdpOf("v=0", "o=x 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio"),
	} {
		if _, err := holdAnswer(bad, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReorigin(t *testing.T) {
	o := &origin{sessID: 9, addr: netip.MustParseAddr("::1")}
	got, err := reorigin(phone, o)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Replace(phone, []byte("o=phone 123 7 IN IP4 192.0.2.10"), []byte("o=hlas 9 1 IN IP6 ::1"), 1)
	if !bytes.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// LF line ends come out as CRLF; the version grows per description.
	lf := bytes.ReplaceAll(phone, []byte("\r\n"), []byte("\n"))
	got, err = reorigin(lf, o)
	if err != nil || !bytes.Equal(got, bytes.Replace(want, []byte(" 9 1 "), []byte(" 9 2 "), 1)) {
		t.Errorf("LF description: %v\n%s", err, got)
	}
	if _, err := reorigin(sdpOf("v=0", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4 RTP/AVP 0"), o); err == nil {
		t.Error("description without o= accepted")
	}
}

func TestSameMedia(t *testing.T) {
	same := bytes.Replace(phone, []byte("o=phone 123 7"), []byte("o=other 5 99"), 1)
	for name, tc := range map[string]struct {
		b    []byte
		want bool
	}{
		"origin only":               {same, true},
		"port":                      {bytes.Replace(phone, []byte("m=audio 4000"), []byte("m=audio 4004"), 1), false},
		"address":                   {bytes.ReplaceAll(phone, []byte("192.0.2.10"), []byte("192.0.2.11")), false},
		"formats":                   {bytes.Replace(phone, []byte("RTP/AVP 0 8 101"), []byte("RTP/AVP 8 101"), 1), false},
		"direction":                 {bytes.Replace(phone, []byte("a=sendrecv"), []byte("a=sendonly"), 1), false},
		"a stream fewer":            {bytes.Split(phone, []byte("m=image"))[0], false},
		"disabled stream's formats": {bytes.Replace(phone, []byte("m=video 0 RTP/AVP 96"), []byte("m=video 0 RTP/AVP 97"), 1), true},
		"garbage":                   {[]byte("x"), false},
	} {
		if got := sameMedia(phone, tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

// The offer handler before the call is connected: A's offer while B is
// being called is held; any offer while the setup re-INVITEs run gets
// 491; a re-INVITE without SDP gets the last description the leg was
// given.
func TestRelayBeforeConnected(t *testing.T) {
	c := &Call{ctx: context.Background()}
	for i := range c.orig {
		c.orig[i] = origin{sessID: uint64(i + 1), addr: netip.MustParseAddr("127.0.0.1")}
	}
	ans, err := c.relay(legA)(phone)
	if err != nil || !bytes.Contains(ans, []byte("a=inactive")) || !bytes.Equal(c.got[legA], phone) {
		t.Fatalf("held answer: %v\n%s", err, ans)
	}
	again, err := c.relay(legA)(nil)
	if err != nil || !bytes.Equal(mediaLines(again), mediaLines(ans)) || bytes.Equal(again, ans) {
		t.Errorf("offer for a re-INVITE without SDP: %v\n%s", err, again)
	}
	c.legs[legA] = &ua.Call{} // A is there: B's offers wait for the setup
	var se *ua.StatusError
	if _, err := c.relay(legB)(phone); !errors.As(err, &se) || se.Code != 491 {
		t.Errorf("offer during the setup: %v, want 491", err)
	}
}

func mediaLines(b []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\r\n") {
		if !strings.HasPrefix(l, "o=") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\r\n"))
}

// The SDP helpers never panic, and what they produce is SDP that sdpedit
// reads, with held streams.
func FuzzSDP(f *testing.F) {
	f.Add(phone)
	f.Add(bytes.ReplaceAll(phone, []byte("\r\n"), []byte("\n")))
	f.Add(ua.Offer("127.0.0.1", 4000, 1, 1))
	f.Add([]byte("v=0\r\nm=audio 0 RTP/AVP\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o := &origin{sessID: 1, addr: netip.MustParseAddr("127.0.0.1")}
		if ans, err := holdAnswer(b, o); err == nil {
			d, err := sdpedit.Parse(ans)
			if err != nil {
				t.Fatalf("hold answer unreadable: %v\n%q", err, ans)
			}
			for i, s := range d.Streams {
				if s.Port != 0 && !s.OnHold() {
					t.Fatalf("stream %d not held:\n%q", i, ans)
				}
			}
		}
		if out, err := reorigin(b, o); err == nil {
			if _, err := sdpedit.Parse(out); err != nil {
				t.Fatalf("reorigin output unreadable: %v\n%q", err, out)
			}
			if _, err := streams(b); err == nil && !sameMedia(b, out) {
				t.Fatalf("reorigin changed the media:\n%q\n%q", b, out)
			}
		}
		_ = sameMedia(b, phone)
	})
}

// TestStatusOfFailures: what a leg's failure tells the API and the
// events. A description the controller cannot pass on is 488 (RFC 3261
// §13.3.1.1: the session cannot be set up as described); anything else
// unforeseen is 500 without the Go error as its reason phrase.
func TestStatusOfFailures(t *testing.T) {
	_, badSDP := reorigin([]byte("v=0\r\nthis is no SDP\r\n"), &origin{})
	if badSDP == nil {
		t.Fatal("reorigin took a broken description")
	}
	_, badHold := holdAnswer([]byte("not SDP at all"), &origin{})
	for _, tc := range []struct {
		err    error
		code   int
		reason string
	}{
		{badSDP, 488, "Not Acceptable Here"},
		{badHold, 488, "Not Acceptable Here"},
		{ua.ErrNoCommonCodec, 488, "Not Acceptable Here"},
		{ua.ErrTimeout, 408, "Request Timeout"},
		{errors.New("tpcc: something internal"), 500, "Server Internal Error"},
	} {
		if code, reason := status(tc.err, false); code != tc.code || reason != tc.reason {
			t.Errorf("status(%v) = %d %q, want %d %q", tc.err, code, reason, tc.code, tc.reason)
		}
	}
	if code, _ := status(badSDP, true); code != 408 {
		t.Errorf("a leg that timed out: %d, want 408", code)
	}
}
