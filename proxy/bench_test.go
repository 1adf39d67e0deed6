package proxy

import (
	"strconv"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

// The stateful proxy's work for one call attempt, without sockets: an
// INVITE from the caller through the chain (route, response context,
// branch, Via and Record-Route, client transaction) to the callee, and
// the callee's 486 back (parsed, matched, ranked, sent upstream, ACKed).
// "static" finds the callee in the configured locations; "dns" through a
// resolve rule and RFC 3263 (NAPTR, SRV, A from the resolver's cache), so
// the difference is what DNS routing adds per call.
func BenchmarkProxyINVITE486(b *testing.B) {
	srv := resolvetest.Start(b, "$ORIGIN far.test.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n"+
		"@ 3600 IN NAPTR 10 10 \"s\" \"SIP+D2U\" \"\" _sip._udp\n"+
		"_sip._udp 3600 IN SRV 0 10 5062 callee\ncallee 3600 IN A 198.51.100.30\n")
	for _, tc := range []struct {
		name string
		ruri string
		cfg  Config
		dns  bool
	}{
		{"static", "sip:carol@example.test", Config{Locations: map[string][]string{"carol@example.test": {"sip:carol@198.51.100.30:5062"}}}, false},
		{"dns", "sip:carol@far.test", Config{Rules: []Rule{{Domain: "far.test", Action: ActionResolve}}}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var mod func(*Env)
			if tc.dns {
				r, err := resolve.New(resolve.Config{Servers: []string{srv.Addr}})
				if err != nil {
					b.Fatal(err)
				}
				mod = func(env *Env) { env.DNS = r }
			}
			e := newTestEnv(b, tc.cfg, mod)
			i := 0
			call := func() {
				i++
				req := request(b, sip.INVITE, tc.ruri)
				req.CallID = "bench-" + strconv.Itoa(i)
				req.Via[0].Params = sip.Params(";branch=z9hG4bKbench" + strconv.Itoa(i) + ";rport")
				e.serve(req)
				var out []*sip.Request
				for out = e.net.requests(b); len(out) == 0; out = e.net.requests(b) {
					// the DNS branch starts on the lookup pool
				}
				e.answer(out[0], 486, "callee")
				e.net.take() // the ACK
				if i%1000 == 0 {
					e.clock.Advance(time.Minute) // transactions in Completed end
				}
			}
			call() // warms the resolver's cache
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				call()
			}
			b.StopTimer()
			if tc.dns {
				b.Logf("resolver %+v", e.p.env.DNS.Stats())
			}
		})
	}
}
