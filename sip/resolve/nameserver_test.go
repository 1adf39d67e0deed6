package resolve

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

// silentServer is a DNS server that reads every query and answers none;
// it returns its address and the count of queries it got.
func silentServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String(), &n
}

const deadTestZone = `
$ORIGIN example.test.
@    3600 IN SOA ns hostmaster 1 3600 600 86400 300
host 3600 IN A   192.0.2.1
`

// TestDeadServerPassedBy: RFC 2308 §7.2. A server that failed three
// exchanges in a row is not asked until DeadServerFor has passed (lookups
// fail at once when it is the only one, go straight to the next
// otherwise); then one query probes it, and an answer brings it back.
func TestDeadServerPassedBy(t *testing.T) {
	ctx := context.Background()

	t.Run("the only server: lookups fail at once, a probe per period", func(t *testing.T) {
		addr, got := silentServer(t)
		r, clk := newResolver(t, nil, Config{Servers: []string{addr}, Timeout: 50 * time.Millisecond, Attempts: 1, CacheSize: -1})
		for i := range deadAfter {
			if _, err := r.lookup(ctx, "a.example.test.", dns.TypeA); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("lookup %d: %v, want ErrUnavailable", i, err)
			}
		}
		if n := got.Load(); n != deadAfter {
			t.Fatalf("%d queries, want %d", n, deadAfter)
		}
		if st := r.Stats(); st.DeadServers != 1 {
			t.Errorf("DeadServers = %d, want 1", st.DeadServers)
		}
		for range 5 {
			if _, err := r.lookup(ctx, "b.example.test.", dns.TypeA); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("lookup with the server dead: %v, want ErrUnavailable", err)
			}
		}
		if n := got.Load(); n != deadAfter {
			t.Errorf("the dead server got %d more queries", n-deadAfter)
		}
		// Its time is up: one query probes it, fails, and it is dead again.
		clk.Advance(DefaultDeadServerFor)
		_, _ = r.lookup(ctx, "c.example.test.", dns.TypeA)
		_, _ = r.lookup(ctx, "d.example.test.", dns.TypeA)
		if n := got.Load(); n != deadAfter+1 {
			t.Errorf("%d queries after the period, want one probe", n-deadAfter)
		}
	})

	t.Run("two servers: the dead first one is skipped", func(t *testing.T) {
		silent, got := silentServer(t)
		live := resolvetest.Start(t, deadTestZone)
		r, _ := newResolver(t, nil, Config{Servers: []string{silent, live.Addr}, Timeout: 50 * time.Millisecond, Attempts: 1, CacheSize: -1})
		for i := range deadAfter + 3 {
			rrs, err := r.lookup(ctx, "host.example.test.", dns.TypeA)
			if err != nil || len(rrs) != 1 {
				t.Fatalf("lookup %d: %v %v, want the live server's answer", i, rrs, err)
			}
		}
		if n := got.Load(); n != deadAfter {
			t.Errorf("the silent server got %d queries, want %d before it is passed by", n, deadAfter)
		}
	})

	t.Run("an answer brings a server back; answers in between keep it alive", func(t *testing.T) {
		srv := resolvetest.Start(t, deadTestZone)
		srv.Drop("lost.example.test.")
		r, clk := newResolver(t, nil, Config{Servers: []string{srv.Addr}, Timeout: 50 * time.Millisecond, Attempts: 1, CacheSize: -1})
		// Lost queries between answered ones: never three in a row.
		for range 4 {
			_, _ = r.lookup(ctx, "lost.example.test.", dns.TypeA)
			_, _ = r.lookup(ctx, "lost.example.test.", dns.TypeA)
			if _, err := r.lookup(ctx, "host.example.test.", dns.TypeA); err != nil {
				t.Fatalf("a server answering other names deemed dead: %v", err)
			}
		}
		for range deadAfter {
			_, _ = r.lookup(ctx, "lost.example.test.", dns.TypeA)
		}
		if _, err := r.lookup(ctx, "host.example.test.", dns.TypeA); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("after %d losses in a row: %v, want ErrUnavailable", deadAfter, err)
		}
		clk.Advance(DefaultDeadServerFor)
		for i := range 3 {
			if rrs, err := r.lookup(ctx, "host.example.test.", dns.TypeA); err != nil || len(rrs) != 1 {
				t.Fatalf("lookup %d after the period: %v %v, want the answer", i, rrs, err)
			}
		}
	})

	t.Run("dead_server_for negative: never deemed dead", func(t *testing.T) {
		addr, got := silentServer(t)
		r, _ := newResolver(t, nil, Config{Servers: []string{addr}, Timeout: 20 * time.Millisecond, Attempts: 1, CacheSize: -1, DeadServerFor: -1})
		for range deadAfter + 2 {
			_, _ = r.lookup(ctx, "a.example.test.", dns.TypeA)
		}
		if n := got.Load(); n != deadAfter+2 {
			t.Errorf("%d queries, want every lookup to ask", n)
		}
	})
}

func TestDeadServerForBound(t *testing.T) {
	if err := (Config{Servers: []string{"127.0.0.1:53"}, DeadServerFor: 6 * time.Minute}).Validate(); err == nil {
		t.Error("dead_server_for 6m accepted; RFC 2308 §7.2 allows at most 5m")
	}
}
