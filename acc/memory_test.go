package acc

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/hlas-voip/hlas/sip"
)

// sdp is an offer or answer of a typical softphone: the body of the
// INVITE and of its 2xx, which a tracked call must not keep alive.
const sdp = "v=0\r\no=- 3912345678 3912345678 IN IP4 192.0.2.1\r\ns=hlas\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\n"

// wireInvite is an INVITE as it comes off the wire (its own packet
// buffer, which the parsed strings point into), with the headers and
// SDP body a real phone sends.
func wireInvite(tb testing.TB, callID string) *sip.Request {
	tb.Helper()
	text := "INVITE sip:bob@example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK" + callID + "inv\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: \"Alice\" <sip:alice@example.test>;tag=a" + callID + "\r\n" +
		"To: <sip:bob@example.test>\r\n" +
		"Call-ID: " + callID + "@192.0.2.1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@192.0.2.1:5060;transport=udp;ob>\r\n" +
		"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, MESSAGE, NOTIFY, REFER\r\n" +
		"Supported: replaces, 100rel, timer, norefersub\r\n" +
		"Session-Expires: 1800\r\nMin-SE: 90\r\n" +
		"User-Agent: hlas-test softphone 1.0\r\n" +
		"Content-Type: application/sdp\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(sdp)) + sdp
	m, err := sip.Parse([]byte(text))
	if err != nil {
		tb.Fatal(err)
	}
	return m.(*sip.Request)
}

// wire200 is the callee's 2xx to inv, parsed from its own packet.
func wire200(tb testing.TB, inv *sip.Request) *sip.Response {
	tb.Helper()
	text := "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;rport=5060;received=192.0.2.1;branch=" + inv.Via[0].Branch() + "\r\n" +
		"Record-Route: <sip:192.0.2.10;lr>\r\n" +
		"From: " + inv.From.String() + "\r\n" +
		"To: <sip:bob@example.test>;tag=b" + inv.CallID + "\r\n" +
		"Call-ID: " + inv.CallID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:bob@192.0.2.2:5062;transport=udp>\r\n" +
		"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE\r\n" +
		"Supported: replaces, timer\r\n" +
		"Require: timer\r\nSession-Expires: 1800;refresher=uac\r\n" +
		"Server: hlas-test deskphone 2.0\r\n" +
		"Content-Type: application/sdp\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(sdp)) + sdp
	m, err := sip.Parse([]byte(text))
	if err != nil {
		tb.Fatal(err)
	}
	return m.(*sip.Response)
}

// trackAnswered passes n calls, INVITE then 200, through a's public API,
// as the proxy would, and keeps no reference to the messages.
func trackAnswered(tb testing.TB, a *Accounting, prefix string, n int) {
	tb.Helper()
	for i := range n {
		inv := wireInvite(tb, fmt.Sprintf("%s%d", prefix, i))
		obs := a.Forwarding(context.Background(), inv, caller)
		if obs == nil {
			tb.Fatalf("call %d not tracked", i)
		}
		sent := false
		obs.Respond(wire200(tb, inv), bobPhone, func() { sent = true })
		if !sent {
			tb.Fatalf("the 200 of call %d was held", i)
		}
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// bytesPerAnsweredCall measures the heap that n answered calls, tracked
// and waiting for their BYE, hold: the live heap with them minus the
// live heap without, over n.
func bytesPerAnsweredCall(tb testing.TB, n int) float64 {
	tb.Helper()
	st := &memStore{}
	a, err := New(Config{}, Env{Store: st}) // the wall clock, as in production
	if err != nil {
		tb.Fatal(err)
	}
	defer a.Close()
	// Warm up: the map and the writer's first allocations, the parser's
	// tables, so that they are not counted per call.
	trackAnswered(tb, a, "warm", 64)
	before := heapInUse()
	trackAnswered(tb, a, "mem", n)
	after := heapInUse()
	if got := a.Calls(); got != n+64 {
		tb.Fatalf("Calls = %d, want %d", got, n+64)
	}
	runtime.KeepAlive(a)
	if after < before {
		return 0
	}
	return float64(after-before) / float64(n)
}

// An answered call whose BYE never comes is held for max_duration (4 h
// by default), and there may be max_calls of them: what it holds must be
// small, the strings its record needs and not the INVITE, the 2xx or the
// packets they were parsed from, nor a timer per call. About 470 bytes
// (amd64) since the call keeps its strings packed in one allocation and
// one timer serves all calls; the earlier record-per-call with a timer
// each held about 1.2 KiB, and keeping either packet adds its size.
func TestAnsweredCallHeapIsSmall(t *testing.T) {
	const calls, bound = 2000, 1 << 10
	per := bytesPerAnsweredCall(t, calls)
	t.Logf("%.0f heap bytes per answered call (%d calls)", per, calls)
	if per >= bound {
		t.Fatalf("an answered call holds %.0f bytes of heap, want < %d", per, bound)
	}
}

// BenchmarkAnsweredCallHeap reports the heap held per tracked answered
// call (heap-B/call).
func BenchmarkAnsweredCallHeap(b *testing.B) {
	const calls = 5000
	var per float64
	for range b.N {
		per = bytesPerAnsweredCall(b, calls)
	}
	b.ReportMetric(per, "heap-B/call")
}
