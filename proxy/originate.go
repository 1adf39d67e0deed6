package proxy

import (
	"errors"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// SendRequest sends a request of the server's own inside a dialog (the
// BYEs that end a call without media, the notifier's NOTIFYs): over flow
// when it is set and usable, else to the first Route or the Request-URI,
// resolved (on the lookup pool when that needs the DNS, so the caller
// never waits on the network). It adds the Via and runs a client
// transaction; done, when not nil, is called once with the final response
// or the error (a timeout, a transport failure, no route). The returned
// error is only for what fails at once.
func (p *Proxy) SendRequest(req *sip.Request, flow Flow, done func(*sip.Response, error)) error {
	return p.sendRequest(req, flow, done, false)
}

// SendRequestInline is SendRequest for a done that never blocks: the
// response may be handed to it on the goroutine that read it
// (transaction.ClientOptions.Inline).
func (p *Proxy) SendRequestInline(req *sip.Request, flow Flow, done func(*sip.Response, error)) error {
	return p.sendRequest(req, flow, done, true)
}

func (p *Proxy) sendRequest(req *sip.Request, flow Flow, done func(*sip.Response, error), inline bool) error {
	if done == nil {
		done = func(*sip.Response, error) {}
	}
	if !flow.IsZero() && p.flowUsable(flow) {
		return p.sendOwn(req, Hop{Proto: flow.Proto, Addr: flow.Remote}, flow, done, inline)
	}
	next := req.URI
	if len(req.Route) > 0 {
		next = req.Route[0].URI
	}
	if hops, wait, err := p.hopsNow(req, next, Target{}); !wait {
		if err != nil {
			return err
		}
		h, ok := hops.Next()
		if !ok {
			return errors.New("proxy: no hop for " + next.String())
		}
		return p.sendOwn(req, h, Flow{}, done, inline)
	}
	p.onLookupPool(func() {
		hops, err := p.lookupHops(next)
		if err != nil {
			done(nil, err)
			return
		}
		h, ok := hops.Next()
		if !ok {
			done(nil, errors.New("proxy: no hop for "+next.String()))
			return
		}
		if err := p.sendOwn(req, h, Flow{}, done, inline); err != nil {
			done(nil, err)
		}
	})
	return nil
}

// sendOwn sends req to h (over flow when it is h's) in a client
// transaction of the server's transaction layer.
func (p *Proxy) sendOwn(req *sip.Request, h Hop, flow Flow, done func(*sip.Response, error), inline bool) error {
	s, err := p.outSide(h.Proto, h.Addr, flow)
	if err != nil {
		return err
	}
	params, _ := viaBranch(p.salt^uint64(req.CSeq.Seq), p.branchSeq.Add(1))
	req.Via = []sip.Via{{Proto: "SIP/2.0", Transport: h.Proto, Host: s.host, Port: s.port, Params: params}}
	snd := &byeSender{p: p, proto: h.Proto, local: s.local, remote: h.Addr, conn: flow.Conn}
	_, err = p.env.Transactions.RequestWith(req, snd, func(res *sip.Response, err error) {
		if res != nil && res.StatusCode < 200 {
			return // provisional: done is for the outcome
		}
		done(res, err)
	}, transaction.ClientOptions{Inline: inline})
	return err
}
