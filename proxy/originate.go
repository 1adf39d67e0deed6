package proxy

import (
	"errors"
	"net/netip"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
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
	return p.SendRequestWith(req, flow, done, SendOptions{})
}

// SendOptions are the choices of SendRequestWith.
type SendOptions struct {
	// Inline promises that done never blocks and keeps nothing of the
	// response once it returns: the response may be handed to it on the
	// goroutine that read it, in memory reused afterwards
	// (transaction.ClientOptions.Inline).
	Inline bool
	// Batch, when set, takes the request's first transmission over UDP
	// (retransmissions go on their own), for the caller to send with
	// others in one system call (transport.Batch): the caller flushes it.
	Batch Batch
}

// Batch defers UDP writes so that several leave in one system call;
// *transport.Batch is one. WriteTo is Network.WriteTo's.
type Batch interface {
	WriteTo(proto string, local, remote netip.AddrPort, data []byte) error
}

// SendRequestWith is SendRequest with options. A request that needs a
// DNS lookup first is not batched.
func (p *Proxy) SendRequestWith(req *sip.Request, flow Flow, done func(*sip.Response, error), o SendOptions) error {
	if done == nil {
		done = func(*sip.Response, error) {}
	}
	if !flow.IsZero() && p.flowUsable(flow) {
		return p.sendOwn(req, Hop{Proto: flow.Proto, Addr: flow.Remote}, flow, done, o)
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
		return p.sendOwn(req, h, Flow{}, done, o)
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
		if err := p.sendOwn(req, h, Flow{}, done, SendOptions{Inline: o.Inline}); err != nil {
			done(nil, err)
		}
	})
	return nil
}

// sendOwn sends req to h (over flow when it is h's) in a client
// transaction of the server's transaction layer.
func (p *Proxy) sendOwn(req *sip.Request, h Hop, flow Flow, done func(*sip.Response, error), opt SendOptions) error {
	s, err := p.outSide(h.Proto, h.Addr, flow)
	if err != nil {
		return err
	}
	params, _ := viaBranch(p.salt^uint64(req.CSeq.Seq), p.branchSeq.Add(1))
	o := &ownRequest{byeSender: byeSender{p: p, proto: h.Proto, local: s.local, remote: h.Addr, conn: flow.Conn}, done: done}
	if h.Proto == transport.UDP {
		o.batch = opt.Batch
	}
	o.via[0] = sip.Via{Proto: "SIP/2.0", Transport: h.Proto, Host: s.host, Port: s.port, Params: params}
	req.Via = o.via[:]
	_, err = p.env.Transactions.RequestWith(req, &o.byeSender, o.handle, transaction.ClientOptions{Inline: opt.Inline})
	return err
}

// ownRequest is what a request of the proxy's own needs besides the
// request and its transaction, in one allocation: a NOTIFY storm sends
// thousands a second.
type ownRequest struct {
	byeSender
	via  [1]sip.Via
	done func(*sip.Response, error)
}

// handle passes the final response or the error to done; provisional
// responses are not its business.
func (o *ownRequest) handle(res *sip.Response, err error) {
	if res != nil && res.StatusCode < 200 {
		return
	}
	o.done(res, err)
}
