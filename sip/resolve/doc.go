// Package resolve finds where to send a SIP request, by RFC 3263, and maps
// telephone numbers to SIP URIs through ENUM (RFC 6116, RFC 3761), on
// github.com/miekg/dns.
//
// A Resolver is a small stub resolver of its own: it asks the configured
// servers (or those of /etc/resolv.conf) over UDP, again over TCP when an
// answer comes back truncated, caches answers for their TTL and negative
// answers for the SOA minimum (RFC 2308), and keeps a blocklist of targets
// that failed (RFC 3263 §4.3).
//
//	r, err := resolve.New(resolve.Config{})
//	ts, err := r.Resolve(ctx, uri) // NAPTR → SRV → A/AAAA
//	for t, ok := ts.Next(); ok; t, ok = ts.Next() {
//		if err := send(t.Transport, t.Addr); err != nil {
//			ts.Fail(t, resolve.ReasonTimeout) // and try the next one
//			continue
//		}
//		break
//	}
//
// Every target carries the chain of records that produced it (Target.Why),
// which `hlas dns resolve` prints. Package resolvetest serves zones from an
// in-process DNS server on loopback for tests of this and other packages.
package resolve
