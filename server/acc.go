package server

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// openAccounting builds the call detail records (when enabled), writing
// to the store openRegistrar opened and timing calls on the transaction
// layer's clock. With accounting.retention it also starts deleting the
// expired records, on the same clock.
func (s *Server) openAccounting(log *slog.Logger) error {
	if !s.cfg.Accounting.On() {
		return nil
	}
	var recs store.CDRs = s.store
	if s.apiEvents != nil {
		recs = cdrStore{cdrs: s.store, ae: s.apiEvents}
	}
	a, err := acc.New(s.cfg.Accounting, acc.Env{
		Store: recs, Clock: s.txl.Config().Clock, Logger: log, Registerer: s.reg,
	})
	if err != nil {
		return err
	}
	s.acc = a
	return nil
}

// accounting is the proxy's view of acc: nil when off (not a typed nil).
func (s *Server) accounting() proxy.Accounting {
	if s.acc == nil {
		return nil
	}
	return s.acc
}

// closeAccounting stops the retention purge, ends the calls still open
// and flushes the records.
func (s *Server) closeAccounting() {
	if s.acc != nil {
		_ = s.acc.Close()
	}
}

// Accounting returns the call detail records' tracker, nil when
// accounting is off.
func (s *Server) Accounting() *acc.Accounting { return s.acc }

// accRegister records REGISTERs answered >= 300 when
// accounting.failed_registers is on — except the challenge to a REGISTER
// without credentials and a stale-nonce challenge (RFC 7616 §3.3), which
// are how digest authentication starts, not failures. Like every record,
// the response goes out once the record is committed.
func (s *Server) accRegister(next Handler) Handler {
	if s.acc == nil || !s.cfg.Accounting.FailedRegisters {
		return next
	}
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		st, ok := tx.(*serverTx)
		if !ok || req.Method != sip.REGISTER {
			next.ServeSIP(ctx, tx, req)
			return
		}
		next.ServeSIP(ctx, &accRegisterTx{serverTx: st, s: s, req: req}, req)
	})
}

// accRegisterTx watches the final response to a REGISTER. It embeds the
// server transaction so the registrar still sees its flow (LocalAddr,
// Conn, Flow).
type accRegisterTx struct {
	*serverTx
	s    *Server
	req  *sip.Request
	once sync.Once
}

func (t *accRegisterTx) Respond(res *sip.Response) error {
	t.observe(res, func() { _ = t.serverTx.Respond(res) })
	return nil
}

func (t *accRegisterTx) RespondStateless(res *sip.Response) error {
	t.observe(res, func() { _ = t.serverTx.RespondStateless(res) })
	return nil
}

// observe sends res, after its record is committed when it is a failure.
func (t *accRegisterTx) observe(res *sip.Response, send func()) {
	if res.StatusCode < 300 || !registerFailed(t.req, res) {
		send()
		return
	}
	recorded := false
	t.once.Do(func() {
		recorded = true
		rec := t.s.acc.NewRecord(acc.KindRegister, t.req, t.sourceText(), "")
		rec.End = rec.Start
		acc.SetFinal(&rec, res)
		rec.Status = acc.StatusFailed
		t.s.acc.Record(rec, send)
	})
	if !recorded {
		send()
	}
}

// registerFailed tells a failure from the challenges of a normal
// registration.
func registerFailed(req *sip.Request, res *sip.Response) bool {
	if !acc.Challenge(res) {
		return true
	}
	if req.Get("Authorization") == "" && req.Get("Proxy-Authorization") == "" {
		return false
	}
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
		for _, v := range res.Values(name) {
			if strings.Contains(strings.ToLower(v), "stale=true") {
				return false
			}
		}
	}
	return true
}

// accCalls records the INVITEs outside a dialog that the server answers
// itself without forwarding them (acc.Accounting.Refused): from here on
// in the chain that is 483 and 420 (Proxy-Require), and the proxy's
// refusals and redirections — 404, 480, 403 caller-ID spoofing, 482,
// 503 overload, reject and redirect rules, redirect mode — and the 404
// of the chain's end. They all answer through RespondStateless; a
// forwarded INVITE's responses go through Respond and the proxy's
// Accounting hook instead. Challenges (401, 407) make no record. The
// response goes out once its record is committed. Stateless mode makes
// no records.
func (s *Server) accCalls(next Handler) Handler {
	if s.acc == nil {
		return next
	}
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		st, ok := tx.(*serverTx)
		if !ok || req.Method != sip.INVITE || req.To.Tag() != "" {
			next.ServeSIP(ctx, tx, req)
			return
		}
		next.ServeSIP(ctx, &accCallTx{serverTx: st, s: s, req: req, ctx: ctx}, req)
	})
}

// accIdentity hands accCallTx the context after the proxy's
// authentication step, which knows the authenticated user.
func (s *Server) accIdentity(next Handler) Handler {
	if s.acc == nil {
		return next
	}
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if t, ok := tx.(*accCallTx); ok {
			t.ctx = ctx
		}
		next.ServeSIP(ctx, tx, req)
	})
}

// accCallTx watches the stateless final response to an INVITE. It embeds
// the server transaction so the proxy still sees its flow and CANCEL
// (proxy.FlowTx, proxy.CancelTx).
type accCallTx struct {
	*serverTx
	s   *Server
	req *sip.Request
	ctx context.Context
}

func (t *accCallTx) RespondStateless(res *sip.Response) error {
	if res.StatusCode < 300 || acc.Challenge(res) {
		// Nothing to record: no need to build the user and source.
		return t.serverTx.RespondStateless(res)
	}
	user := ""
	if u, ok := auth.URIFromContext(t.ctx); ok {
		user = acc.AOR(u)
	}
	t.s.acc.Refused(t.req, res, t.sourceText(), user, func() { _ = t.serverTx.RespondStateless(res) })
	return nil
}

// sourceText is where the request came from as a record keeps it,
// "transport:ip:port".
func (t *serverTx) sourceText() string {
	return strings.ToLower(t.Transport()) + ":" + t.Source().String()
}
