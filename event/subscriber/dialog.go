package subscriber

import (
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/sip"
)

// dialog is the subscriber's side of a subscription dialog (RFC 3261
// §12): the addresses and routes it was made with, copied out of the
// message that made it so that the receive buffer is not kept alive for
// the hours a subscription lasts. Its local CSeq lives in the sub, as it
// counts from the initial SUBSCRIBE on. The Client's mutex guards it.
type dialog struct {
	local     sip.Address // our From, with our tag
	remote    sip.Address // our To, with the notifier's tag
	remoteTag string
	target    sip.URI
	routes    []sip.Address
	remoteSeq uint32
	hasRemote bool
}

// dialogFromResponse makes the dialog of a 2xx to the initial SUBSCRIBE,
// as its UAC (RFC 3261 §12.1.2): route set = Record-Route reversed, remote
// target = Contact (reqURI, the SUBSCRIBE's Request-URI, when it has
// none). local is our From with our tag.
func dialogFromResponse(local sip.Address, reqURI sip.URI, res *sip.Response) (*dialog, bool) {
	if res.To.Tag() == "" {
		return nil, false
	}
	target := reqURI
	if len(res.Contact) > 0 && !res.Contact[0].Wildcard {
		target = res.Contact[0].URI
	}
	d := &dialog{local: local, remote: ownAddress(res.To), target: ownURI(target)}
	d.remoteTag = d.remote.Tag()
	d.routes = make([]sip.Address, len(res.RecordRoute))
	for i := range res.RecordRoute {
		d.routes[len(res.RecordRoute)-1-i] = ownAddress(res.RecordRoute[i])
	}
	return d, d.remoteTag != ""
}

// dialogFromNotify makes the dialog of a NOTIFY that arrived before the
// SUBSCRIBE's 2xx (RFC 6665 §4.1.2.4): we answer the NOTIFY, so the UAS
// rules apply (RFC 3261 §12.1.1): route set = Record-Route in order,
// remote target = Contact. local is our From with our tag.
func dialogFromNotify(local sip.Address, req *sip.Request) (*dialog, bool) {
	if req.From.Tag() == "" || len(req.Contact) == 0 || req.Contact[0].Wildcard {
		return nil, false
	}
	d := &dialog{local: local, remote: ownAddress(req.From), target: ownURI(req.Contact[0].URI)}
	d.remoteTag = d.remote.Tag()
	d.routes = make([]sip.Address, len(req.RecordRoute))
	for i := range req.RecordRoute {
		d.routes[i] = ownAddress(req.RecordRoute[i])
	}
	d.remoteSeq, d.hasRemote = req.CSeq.Seq, true
	return d, d.remoteTag != ""
}

// setTarget takes a new remote target from a target refresh (a NOTIFY,
// or a 2xx to a refresh, RFC 6665 §4.1.2.1, §4.1.3), copying it only when
// it changed.
func (d *dialog) setTarget(c []sip.Address) {
	if len(c) == 0 || c[0].Wildcard || c[0].URI.Equal(&d.target) {
		return
	}
	d.target = ownURI(c[0].URI)
}

// request builds a request in the dialog (RFC 3261 §12.2.1.1): From with
// our tag, To with theirs, CSeq seq, and Request-URI and Route from the
// remote target and route set, loose or strict routing. The Route slice is
// the request's own.
func (d *dialog) request(method, callID string, seq uint32) *sip.Request {
	r := &sip.Request{Method: method, Version: "SIP/2.0"}
	r.From, r.To, r.CallID = d.local, d.remote, callID
	r.CSeq = sip.CSeq{Seq: seq, Method: method}
	r.MaxForwards = 70
	switch {
	case len(d.routes) == 0:
		r.URI = d.target
	case d.routes[0].URI.Params.Has("lr"):
		r.URI = d.target
		r.Route = append([]sip.Address(nil), d.routes...)
	default:
		// A strict router first (RFC 3261 §12.2.1.1): it goes in the
		// Request-URI and the remote target at the end of Route.
		r.URI = d.routes[0].URI
		r.URI.Params = r.URI.Params.Del("method")
		r.URI.Headers = ""
		r.Route = make([]sip.Address, 0, len(d.routes))
		r.Route = append(r.Route, d.routes[1:]...)
		r.Route = append(r.Route, sip.Address{URI: d.target})
	}
	return r
}

// ownAddress copies a into memory of its own (the parsed form refers into
// the text it came from).
func ownAddress(a sip.Address) sip.Address {
	b, err := sip.ParseAddress(a.String())
	if err != nil {
		return a
	}
	return b
}

// ownURI copies u into memory of its own.
func ownURI(u sip.URI) sip.URI {
	v, err := sip.ParseURI(u.String())
	if err != nil {
		return u
	}
	return v
}

// subscribeHeaders adds what every SUBSCRIBE of a subscription carries
// besides the dialog's fields (RFC 6665 §8.2.1).
func subscribeHeaders(r *sip.Request, event, accept string, expires int64, userAgent string) {
	r.Fields = make([]sip.Field, 0, 4)
	r.Add("Event", event)
	r.Add("Expires", strconv.FormatInt(expires, 10))
	if accept != "" {
		r.Add("Accept", accept)
	}
	if userAgent != "" {
		r.Add("User-Agent", userAgent)
	}
}

// acceptValue joins the Accept values, dropping empty ones and any that
// could break the header line.
func acceptValue(accept []string) string {
	var b strings.Builder
	for _, a := range accept {
		a = strings.TrimSpace(a)
		if a == "" || strings.ContainsAny(a, "\r\n") {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a)
	}
	return b.String()
}
