package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
	"github.com/hlas-voip/hlas/sip/transaction"
)

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{"18000;duration=3600", time.Hour}, // capped
		{"30 (lunch)", 30 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
	} {
		res := &sip.Response{StatusCode: 503}
		if tc.header != "" {
			res.Add("Retry-After", tc.header)
		}
		if got := retryAfter(res); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.header, got, tc.want)
		}
	}
}

// A 503's Retry-After, not the default blocklist time, decides how long
// the DNS target is tried last.
func TestDNSHopsFailFor(t *testing.T) {
	srv := resolvetest.Start(t, "$ORIGIN far.test.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n"+
		"_sip._udp 60 IN SRV 0 10 5060 sip1\n_sip._udp 60 IN SRV 1 10 5060 sip2\n"+
		"sip1 60 IN A 192.0.2.1\nsip2 60 IN A 192.0.2.2\n")
	clock := transaction.NewFakeClock(time.Unix(1_700_000_000, 0))
	r, err := resolve.New(resolve.Config{Servers: []string{srv.Addr}, Clock: clock, BlocklistFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := sip.ParseURI("sip:bob@far.test")
	first := func() string {
		ts, err := r.Resolve(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := newDNSHops(ts).Next()
		return h.Addr.Addr().String()
	}
	ts, _ := r.Resolve(context.Background(), u)
	hops := newDNSHops(ts)
	h, _ := hops.Next()
	hops.FailFor(h, FailUnavailable, 30*time.Second)
	if got := first(); got != "192.0.2.2" {
		t.Errorf("right after the 503 the first target is %s, want the other one", got)
	}
	clock.Advance(31 * time.Second)
	if got := first(); got != "192.0.2.1" {
		t.Errorf("after its Retry-After the first target is %s, want it back", got)
	}
}
