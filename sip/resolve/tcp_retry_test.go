package resolve

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// udpOnlyServer answers over UDP only (DNS over TCP is firewalled, as it
// often is): names under big. come back truncated, others with an A record.
func udpOnlyServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if dns.IsSubDomain("big.example.test.", q.Question[0].Name) {
			m.Truncated = true
		} else {
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// A server that answers every query over UDP is alive (RFC 2308 §7.2 is
// about servers that do not respond), even when the TCP retries of its
// truncated answers fail: it must not be deemed dead, and names it answers
// over UDP keep resolving.
func TestTCPRetryFailureKeepsServerAlive(t *testing.T) {
	ctx := context.Background()
	addr := udpOnlyServer(t)
	r, _ := newResolver(t, nil, Config{Servers: []string{addr}, Timeout: time.Second, Attempts: 1, CacheSize: -1})
	for range deadAfter {
		_, _ = r.lookup(ctx, "big.example.test.", dns.TypeSRV)
	}
	if _, err := r.lookup(ctx, "small.example.test.", dns.TypeA); err != nil {
		t.Errorf("lookup of a name the server answers over UDP: %v", err)
	}
}
