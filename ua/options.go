package ua

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// CallOptions change how UA.CallWith places a call. The zero value places
// the call UA.Call does.
type CallOptions struct {
	// Offer is the SDP offered in the INVITE instead of the UA's own.
	Offer []byte
	// NoOffer sends the INVITE without a body: the 2xx then carries the
	// offer and the ACK the answer (RFC 3261 §13.2.1, RFC 3264 §4). The
	// INVITE does not advertise 100rel, so that no reliable provisional
	// response can carry the offer instead (RFC 3262 §5). Exclusive with
	// Offer.
	NoOffer bool
	// AnswerOffer, with NoOffer, produces the answer to the 2xx's offer
	// that the ACK carries. Nil answers with the UA's own SDP. It runs
	// before the ACK is sent and must be quick: the peer retransmits its
	// 2xx until the ACK arrives. When it fails (or the 2xx has no offer)
	// the call is ACKed without a body, ended with BYE at once, and
	// CallWith returns the error.
	AnswerOffer func(offer []byte) ([]byte, error)
	// From is the From identity (display name and URI) instead of the
	// UA's address of record: a third party controller calls A as B, so
	// that A's phone shows whom it will talk to. Its tag, if any, is
	// replaced by the UA's new one.
	From *sip.Address
	// CallID is the Call-ID instead of a new random one, so that the
	// caller knows it before the INVITE is answered. It must be unique.
	CallID string
	// Headers are extra header fields for the INVITE (Subject,
	// Call-Info, X-...). Fields the UA writes itself (Via, From, To,
	// Call-ID, CSeq, Contact, Route, Record-Route, Max-Forwards,
	// Content-Type, Content-Length) are refused.
	Headers []sip.Field
	// OnProvisional is told each provisional response above 100 (RFC
	// 3261 §13.2.2.1), forks included. It runs on a worker and must not
	// block.
	OnProvisional func(res *sip.Response)
	// OnOffer and OnAnswer are the call's offer handlers from its start;
	// see Call.OnOffer and Call.OnAnswer.
	OnOffer  func(offer []byte) ([]byte, error)
	OnAnswer func(answer []byte)
	// NoRedirect makes a 3xx a failure like any other final response:
	// the UA follows neither a 3xx's Contacts nor a 305's proxy. A UA
	// whose requests are trusted (the server's click-to-call) must not
	// let the party it calls choose whom it calls next.
	NoRedirect bool
}

// ErrOptions is a CallOptions the UA cannot use.
var ErrOptions = errors.New("ua: invalid call options")

// Check reports what CallWith would refuse in o (an error wrapping
// ErrOptions), so that a caller can refuse bad input before it starts a
// call.
func (o *CallOptions) Check() error {
	if o.NoOffer && len(o.Offer) > 0 {
		return fmt.Errorf("%w: Offer and NoOffer together", ErrOptions)
	}
	if o.AnswerOffer != nil && !o.NoOffer {
		return fmt.Errorf("%w: AnswerOffer without NoOffer", ErrOptions)
	}
	if o.From != nil && (o.From.URI.Scheme == "" || o.From.Wildcard) {
		return fmt.Errorf("%w: From %q", ErrOptions, o.From.String())
	}
	if o.CallID != "" && !isWord(o.CallID) {
		return fmt.Errorf("%w: Call-ID %q", ErrOptions, o.CallID)
	}
	for _, f := range o.Headers {
		if !isToken(f.Name) || strings.ContainsAny(f.Value, "\r\n\x00") {
			return fmt.Errorf("%w: header %q", ErrOptions, f.Name)
		}
		if ownHeader(f.Name) {
			return fmt.Errorf("%w: header %s is the UA's own", ErrOptions, sip.CanonicalName(f.Name))
		}
	}
	return nil
}

// ownHeader reports a header field the UA writes itself (the typed ones
// of package sip).
func ownHeader(name string) bool {
	switch sip.CanonicalName(name) {
	case "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Route", "Record-Route",
		"Max-Forwards", "Content-Type", "Content-Length":
		return true
	}
	return false
}

// isToken reports an RFC 3261 §25.1 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// isWord reports an RFC 3261 §25.1 word (the characters of a Call-ID).
func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~()<>:\\\"/[]?{}@", c) >= 0 {
			continue
		}
		return false
	}
	return s != ""
}

// OnOffer hands every offer that arrives within the call's dialog (a
// re-INVITE or an UPDATE with SDP, RFC 3261 §14.2, RFC 3311) to f instead
// of the UA's own answer: f returns the answer the UA sends in the 2xx. f
// runs on a goroutine of its own and may take seconds (a controller
// re-INVITEs another call to learn the answer); meanwhile another
// re-INVITE or UPDATE offer from the peer gets 500 with Retry-After (RFC
// 3261 §14.2, RFC 3311 §5.2) and Call.ReInvite refuses with ErrState. A
// failure of f is answered 488, or, when it wraps a *StatusError of 400 to
// 699, with that code (491 for glare; 500 and 503 with Retry-After).
//
// A re-INVITE without SDP asks the UA for an offer in its 2xx (RFC 3264
// §4): f is called with a nil offer and returns that offer; the answer
// the peer puts in its ACK goes to the handler of OnAnswer.
//
// Set f before the peer can send an offer: in Config.OnCall before
// Answer, or with CallOptions.OnOffer. Nil restores the UA's own answers.
func (c *Call) OnOffer(f func(offer []byte) ([]byte, error)) {
	c.mu.Lock()
	c.onOffer = f
	c.mu.Unlock()
}

// OnAnswer receives the answer an ACK carries to the offer OnOffer's
// handler made for a re-INVITE without SDP. It runs on a goroutine of its
// own.
func (c *Call) OnAnswer(f func(answer []byte)) {
	c.mu.Lock()
	c.onAnswer = f
	c.mu.Unlock()
}

// offerFailure maps a failure of an offer handler to the response code
// (see OnOffer).
func offerFailure(err error) int {
	var se *StatusError
	if errors.As(err, &se) && se.Code >= 400 && se.Code <= 699 {
		return se.Code
	}
	return 488
}

// offerHandled answers an in-dialog offer (or an offerless re-INVITE,
// offer nil) through the call's handler f, on a goroutine of the UA's;
// c.offering is set by the caller and cleared here when the response is
// decided. invite says the request is a re-INVITE, whose 2xx is
// retransmitted until its ACK.
func (c *Call) offerHandled(stx *transaction.ServerTx, req *sip.Request, f func([]byte) ([]byte, error), invite bool) {
	u := c.u
	var offer []byte
	if len(req.Body) > 0 {
		offer = req.Body
	}
	run := func() {
		body, err := f(offer)
		if err == nil && len(body) == 0 {
			err = errors.New("ua: offer handler returned no SDP")
		}
		c.mu.Lock()
		if c.state == Ended {
			c.offering = false
			c.mu.Unlock()
			// §15.1.2: the BYE ended the dialog; the pending request
			// still gets a final response.
			_ = stx.Respond(u.newResponse(req, 487, ""))
			return
		}
		if err != nil {
			c.offering = false
			c.mu.Unlock()
			code := offerFailure(err)
			res := u.newResponse(req, code, "")
			if code == 500 || code == 503 {
				res.Add("Retry-After", strconv.Itoa(rand.IntN(10)))
			}
			u.log.Debug("offer handler failed", "call-id", req.CallID, "code", code, "err", err)
			_ = stx.Respond(res)
			return
		}
		res := u.newResponse(req, 200, "")
		res.Contact = []sip.Address{u.contact}
		if invite {
			u.capabilities(&res.Header)
		}
		res.ContentType, res.Body = ContentTypeSDP, body
		c.localSDP = body
		if offer != nil {
			c.remoteSDP = offer
		}
		if invite {
			ok := c.startRetransmit(stx, res, req.CSeq.Seq, offer == nil)
			ok.hooked = true
		}
		c.offering = false
		c.mu.Unlock()
		_ = stx.Respond(res)
	}
	if !u.spawn(run) {
		c.mu.Lock()
		c.offering = false
		c.mu.Unlock()
		_ = stx.Respond(u.newResponse(req, 503, ""))
	}
}
