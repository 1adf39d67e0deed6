package server

import (
	"context"
	"strings"

	"github.com/hlas-voip/hlas/sip"
)

// localAllow lists the methods the server itself accepts as a UAS, for
// Allow headers: REGISTER goes to the registrar (RFC 3261 §10.3).
const localAllow = "OPTIONS, ACK, CANCEL, REGISTER"

// Every answer in this file is stateless (ServerTx.RespondStateless): the
// same processing gives the same answer to a retransmission, and a
// rejected INVITE over UDP must not be retransmitted by Timer G at a
// source that may be spoofed.

// sanity rejects requests that no role can process (RFC 3261 §8.2.1-§8.2.2,
// §16.3, RFC 4475): a SIP version other than 2.0 (505), a CSeq method that
// differs from the request's (501 for an unknown method, RFC 4475 §3.1.2.18;
// 400 otherwise), a Request-URI scheme hlas cannot route (416), and a
// Request-URI with escaped headers (400, RFC 3261 §19.1.1, RFC 4475 §3.1.2.11).
func (s *Server) sanity(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		switch {
		case req.Version != "SIP/2.0":
			s.answer(tx, req, 505, "")
		case req.CSeq.Method != req.Method:
			if !sip.IsKnownMethod(req.Method) {
				s.answerAllow(tx, req, 501)
				return
			}
			s.answerWarn(tx, req, 400, "CSeq method does not match the Request-Line")
		case req.URI.Scheme != sip.SchemeSIP && req.URI.Scheme != sip.SchemeSIPS && req.URI.Scheme != sip.SchemeTel:
			res := s.response(req, 416, "")
			_ = tx.RespondStateless(res)
		case req.URI.Headers != "":
			s.answerWarn(tx, req, 400, "headers are not allowed in the Request-URI")
		default:
			next.ServeSIP(ctx, tx, req)
		}
	})
}

// localUAS answers requests addressed to the server itself: a Request-URI
// without a user part whose host is one of the server's domains or
// addresses. Here the server is the UAS (RFC 3261 §8.2): Require is checked
// (420), OPTIONS is answered (§11.2), unknown methods get 501 and known
// ones it does not serve 405, both with Allow. ACK is absorbed. (CANCEL
// never gets here: the transaction layer answers it, §9.2.)
func (s *Server) localUAS(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if req.URI.User != "" || !req.URI.IsSIP() || !s.self.isSelf(&req.URI) {
			next.ServeSIP(ctx, tx, req)
			return
		}
		if req.Method == sip.ACK {
			return
		}
		if bad := s.unsupported(req, "Require"); len(bad) > 0 {
			res := s.response(req, 420, "")
			res.Add("Unsupported", strings.Join(bad, ", "))
			_ = tx.RespondStateless(res)
			return
		}
		switch req.Method {
		case sip.OPTIONS:
			res := s.response(req, 200, "")
			res.Add("Allow", localAllow)
			res.Add("Accept", "application/sdp")
			res.Add("Accept-Encoding", "identity")
			res.Add("Accept-Language", "en")
			res.Add("Supported", strings.Join(s.supported, ", "))
			_ = tx.RespondStateless(res)
		default:
			if sip.IsKnownMethod(req.Method) {
				s.answerAllow(tx, req, 405)
			} else {
				s.answerAllow(tx, req, 501)
			}
		}
	})
}

// proxyCheck applies the proxy's request validation (RFC 3261 §16.3) to
// requests that are to be routed on: Max-Forwards 0 gets 483 (step 3) and
// an unsupported Proxy-Require gets 420 (step 5). ACK is never answered.
func (s *Server) proxyCheck(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if req.Method == sip.ACK {
			return
		}
		if req.MaxForwards == 0 {
			s.answer(tx, req, 483, "")
			return
		}
		if bad := s.unsupported(req, "Proxy-Require"); len(bad) > 0 {
			res := s.response(req, 420, "")
			res.Add("Unsupported", strings.Join(bad, ", "))
			_ = tx.RespondStateless(res)
			return
		}
		next.ServeSIP(ctx, tx, req)
	})
}

// notFound ends the chain: nothing could route the request.
func notFound(s *Server) Handler {
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		s.answer(tx, req, 404, "")
	})
}

// unsupported returns the option tags of the named header hlas lacks.
func (s *Server) unsupported(req *sip.Request, header string) []string {
	var bad []string
	for _, tag := range req.Values(header) {
		ok := false
		for _, o := range s.supported {
			if strings.EqualFold(tag, o) {
				ok = true
				break
			}
		}
		if !ok {
			bad = append(bad, tag)
		}
	}
	return bad
}

func (s *Server) answer(tx ServerTx, req *sip.Request, code int, reason string) {
	_ = tx.RespondStateless(s.response(req, code, reason))
}

func (s *Server) answerAllow(tx ServerTx, req *sip.Request, code int) {
	res := s.response(req, code, "")
	res.Add("Allow", localAllow)
	_ = tx.RespondStateless(res)
}

func (s *Server) answerWarn(tx ServerTx, req *sip.Request, code int, why string) {
	res := s.response(req, code, "")
	res.Add("Warning", `399 hlas "`+warnEscape(why)+`"`)
	_ = tx.RespondStateless(res)
}
