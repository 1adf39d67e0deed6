package server

import (
	"context"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
)

// The busy-lamp table must empty itself although nobody watches the
// users (documents are never built for them): calls that ended leave
// after blfKeep, answered calls whose BYE never passed after maxAge.
func TestDialogWatchSweep(t *testing.T) {
	srv := newTestServer(t, Config{Domains: []string{"example.test"}})
	now := time.Unix(1_800_000_000, 0)
	w := newDialogWatch(srv, nil)
	w.now = func() time.Time { return now }
	invite := func(callID string) *sip.Request {
		m, err := sip.ParseString("INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK" + callID + "\r\n" +
			"From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\nCall-ID: " + callID + "\r\nCSeq: 1 INVITE\r\n" +
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Request)
	}
	respond := func(req *sip.Request, obs proxy.RequestObserver, code int) {
		sent := false
		obs.Respond(sip.NewResponse(req, code, ""), proxy.Upstream{}, func() { sent = true })
		if !sent {
			t.Fatalf("%d not handed on", code)
		}
	}
	failed, answered := invite("failed"), invite("answered")
	respond(failed, w.Forwarding(context.Background(), failed, proxy.Forwarded{}), 486)
	respond(answered, w.Forwarding(context.Background(), answered, proxy.Forwarded{}), 200)
	if got := len(w.dialogs("bob@example.test")); got != 2 {
		t.Fatalf("bob's dialogs: %d, want the terminated and the confirmed one", got)
	}
	w.sweep(now.Add(blfKeep / 2))
	if n := len(w.calls); n != 2 {
		t.Fatalf("swept early: %d calls left", n)
	}
	w.sweep(now.Add(blfKeep + time.Second))
	if _, ok := w.calls["failed"]; ok || len(w.calls) != 1 {
		t.Fatalf("after blfKeep: %d calls left, the failed one still there: %v", len(w.calls), ok)
	}
	w.sweep(now.Add(w.maxAge + time.Second))
	if n := len(w.calls); n != 0 {
		t.Fatalf("an answered call without a BYE outlived maxAge: %d left", n)
	}
}
