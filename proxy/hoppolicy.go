package proxy

import (
	"strings"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// hopPolicy is what a prepared copy of a request must respect hop by hop,
// decided once per target: which hops it may take, and what it may carry
// to each.
type hopPolicy struct {
	// tlsOnly: a sips request leaves over TLS hops only (RFC 3261
	// §26.2.2, RFC 5630 §3.1.3): other hops are skipped, and a target with
	// no TLS hop at all ends with 480.
	tlsOnly bool
	// hideID: the request asks for id privacy and carries an identity
	// (RFC 3325 §7): the copy to an untrusted hop goes without
	// P-Asserted-Identity and P-Preferred-Identity.
	hideID bool
	// toUA: the target is a user agent (toUserAgent), never trusted.
	toUA bool
}

// policyFor is the hop policy of out, req's copy for t whose next hop is
// found from next; hideID is privacyID(req) && hasIdentity(req), which the
// caller computes once per request.
func policyFor(req, out *sip.Request, next sip.URI, pl plan, t Target, hideID bool) hopPolicy {
	return hopPolicy{tlsOnly: needsTLS(req, out, next), hideID: hideID, toUA: pl.toUserAgent(t)}
}

// allows reports whether the copy may leave over h.
func (hp hopPolicy) allows(h Hop) bool {
	return !hp.tlsOnly || h.Proto == transport.TLS
}

// fields returns the header fields the copy carries to h: fs, or fs
// without its identity headers when h may not see them.
func (hp hopPolicy) fields(p *Proxy, h Hop, fs []sip.Field) []sip.Field {
	if !hp.hideID || !hp.toUA && p.trustedHop(h) {
		return fs
	}
	return withoutIdentity(fs)
}

// needsTLS reports whether req's copy out, whose next hop is found from
// next, may only leave over TLS: the request came for a sips: URI (RFC
// 5630 §3.1.3: TLS on every hop to the target, the last one included, so
// retargeting to a sip: contact or a gateway does not lift it), or the
// copy's Request-URI or next Route is sips: itself.
func needsTLS(req, out *sip.Request, next sip.URI) bool {
	return req.URI.Scheme == sip.SchemeSIPS || out.URI.Scheme == sip.SchemeSIPS || next.Scheme == sip.SchemeSIPS
}

// toUserAgent reports whether t is a user agent rather than a server: a
// binding of the location service (registered or configured), or a
// dialog's phone reached over its flow, and not behind a Path (whose
// first entry, the hop, is a proxy the trust rules may cover). RFC 3325
// §2: user agents are outside the trust domain, whatever their address.
func (pl plan) toUserAgent(t Target) bool {
	return len(t.Path) == 0 && (pl.kind == "local" || !t.Flow.IsZero())
}

// privacyID reports whether req asks for id privacy (RFC 3325 §7, RFC
// 3323 §4.2): a Privacy header listing "id" among its values (separated
// by ";" as RFC 3323 writes them, or "," as some user agents do). A
// request without Privacy costs one scan of its fields.
func privacyID(req *sip.Request) bool {
	if !req.Has("Privacy") {
		return false
	}
	for _, v := range req.All("Privacy") {
		for v != "" {
			var tok string
			if i := strings.IndexAny(v, ";,"); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				tok, v = v, ""
			}
			if strings.EqualFold(strings.TrimSpace(tok), "id") {
				return true
			}
		}
	}
	return false
}

// hasIdentity reports whether fs hold a P-Asserted-Identity or
// P-Preferred-Identity.
func hasIdentity(fs []sip.Field) bool {
	for i := range fs {
		if isIdentity(&fs[i]) {
			return true
		}
	}
	return false
}

func isIdentity(f *sip.Field) bool {
	switch sip.CanonicalName(f.Name) {
	case "P-Asserted-Identity", "P-Preferred-Identity":
		return true
	}
	return false
}

// withoutIdentity returns a copy of fs without P-Asserted-Identity and
// P-Preferred-Identity. A copy: a prepared request shares its fields with
// the request received and the other branches.
func withoutIdentity(fs []sip.Field) []sip.Field {
	out := make([]sip.Field, 0, len(fs))
	for i := range fs {
		if !isIdentity(&fs[i]) {
			out = append(out, fs[i])
		}
	}
	return out
}

// hideIdentity is whether the copies of req drop their identity towards
// untrusted hops: it asks for id privacy and has an identity to hide.
func hideIdentity(req *sip.Request) bool {
	return privacyID(req) && hasIdentity(req.Fields)
}
