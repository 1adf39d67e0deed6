package ua

import (
	"context"
	"errors"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transport"
)

// errNoHop is the end of a request's next hops: every target failed.
var errNoHop = errors.New("ua: no next hop left")

// hops are the places a request may go, in order (RFC 3263 §4): the
// targets of a DNS lookup walked on failures (§4.3), or a single hop.
type hops struct {
	u   *UA
	ts  *resolve.Targets // nil: one hop, no failover
	cur resolve.Target
	h   hop
}

// locate finds where requests to uri go: by RFC 3263 when Config.DNS is
// set, else (and when the DNS has nothing, so that names other system
// name services know still work) by the A/AAAA lookup of resolveAddr.
func (u *UA) locate(ctx context.Context, uri sip.URI) (*hops, error) {
	if u.cfg.DNS != nil {
		lctx, cancel := context.WithTimeout(ctx, u.cfg.ResolveTimeout)
		ts, err := u.cfg.DNS.Resolve(lctx, uri)
		cancel()
		if err == nil {
			hs := &hops{u: u, ts: ts}
			if hs.advance() {
				return hs, nil
			}
		}
	}
	h, err := u.resolveAddr(ctx, uri)
	if err != nil {
		return nil, err
	}
	return &hops{u: u, h: h}, nil
}

// advance moves to the next target the UA can send on; false when none
// is left.
func (hs *hops) advance() bool {
	for {
		t, ok := hs.ts.Next()
		if !ok {
			return false
		}
		switch t.Transport {
		case transport.TCP, transport.TLS:
		case transport.UDP:
			if hs.u.proto != transport.UDP {
				continue // no UDP socket to send from
			}
		default:
			continue
		}
		hs.cur = t
		hs.h = hop{proto: t.Transport, remote: t.Addr, host: t.Host}
		return true
	}
}

// failover reports the current target failed for why and moves to the
// next one (RFC 3263 §4.3); false when there is none.
func (hs *hops) failover(why resolve.Reason) bool {
	if hs.ts == nil {
		return false
	}
	hs.ts.Fail(hs.cur, why)
	return hs.advance()
}

// succeed takes a target that answered off the blocklist.
func (hs *hops) succeed() {
	if hs.ts != nil {
		hs.ts.Succeed(hs.cur)
	}
}

// failure classifies the outcome of a request for failover: a transport
// error, a timeout or a 503 (RFC 3263 §4.3); zero for anything else.
func failure(res *sip.Response, err error) resolve.Reason {
	switch {
	case errors.Is(err, ErrTransport):
		return resolve.ReasonTransport
	case errors.Is(err, ErrTimeout):
		return resolve.ReasonTimeout
	case err == nil && res != nil && res.StatusCode == 503:
		return resolve.ReasonUnavailable
	}
	return 0
}

// nextHop returns the hop for req, a request outside a dialog: located on
// the first call, the same on later attempts (digest retries), and after
// a failure (why != 0) the next target, or errNoHop.
func (u *UA) nextHop(ctx context.Context, hsp **hops, req *sip.Request, why resolve.Reason) (hop, error) {
	if *hsp == nil {
		hs, err := u.hopsOutside(ctx, req)
		if err != nil {
			return hop{}, err
		}
		*hsp = hs
		return hs.h, nil
	}
	if why != 0 && !(*hsp).failover(why) {
		return hop{}, errNoHop
	}
	return (*hsp).h, nil
}
