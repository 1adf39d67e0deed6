package sip

// reasons holds the default reason phrases (RFC 3261 §21 and extensions).
var reasons = map[int]string{
	100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
	183: "Session Progress", 199: "Early Dialog Terminated",
	200: "OK", 202: "Accepted", 204: "No Notification",
	300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
	305: "Use Proxy", 380: "Alternative Service",
	400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
	404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
	407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
	412: "Conditional Request Failed", 413: "Request Entity Too Large",
	414: "Request-URI Too Long", 415: "Unsupported Media Type",
	416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
	421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
	428: "Use Identity Header", 429: "Provide Referrer Identity", 430: "Flow Failed",
	433: "Anonymity Disallowed", 436: "Bad Identity Info", 437: "Unsupported Credential",
	438: "Invalid Identity Header", 439: "First Hop Lacks Outbound Support",
	440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
	480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
	482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
	485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
	488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
	493: "Undecipherable", 494: "Security Agreement Required",
	500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
	503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
	513: "Message Too Large", 555: "Push Notification Service Not Supported",
	580: "Precondition Failure",
	600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
	606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}

// StatusText returns the default reason phrase for a status code, or a
// generic one for its class.
func StatusText(code int) string {
	if r, ok := reasons[code]; ok {
		return r
	}
	switch code / 100 {
	case 1:
		return "Trying"
	case 2:
		return "OK"
	case 3:
		return "Redirected"
	case 4:
		return "Client Error"
	case 5:
		return "Server Error"
	case 6:
		return "Global Failure"
	}
	return "Unknown"
}

// NewResponse builds a response to req as RFC 3261 §8.2.6.2 says: Via,
// From, To, Call-ID and CSeq copied, and Timestamp for 100 (§8.2.6.1).
// A header that was kept raw because it did not parse is copied raw, so a
// 400 to a malformed request still echoes what the client sent. An empty
// reason takes the default phrase. The caller adds a To tag where needed.
func NewResponse(req *Request, code int, reason string) *Response {
	if reason == "" {
		reason = StatusText(code)
	}
	// The response, room for one Via and for the few fields a server adds
	// (Server, Date, a challenge) in one allocation of 896 bytes, where
	// growing Fields from nil took three more. The Vias of a request that
	// came through proxies take one more.
	blk := &responseVia{}
	r := &blk.r
	r.Fields = blk.fields[:0]
	if len(req.Via) == 1 {
		blk.via[0] = req.Via[0]
		r.Via = blk.via[:]
	} else {
		r.Via = append([]Via(nil), req.Via...)
	}
	r.Version, r.StatusCode, r.Reason = sip20, code, reason
	r.From, r.To, r.CallID, r.CSeq = req.From, req.To, req.CallID, req.CSeq
	r.MaxForwards = -1
	for _, f := range req.Fields {
		switch f.canonical() {
		case "Via", "From", "To", "Call-ID", "CSeq":
			r.Fields = append(r.Fields, f)
		case "Timestamp":
			if code == 100 {
				r.Fields = append(r.Fields, f)
			}
		}
	}
	return r
}

// responseVia is a response with the room for one Via (NewResponse).
type responseVia struct {
	r      Response
	via    [1]Via
	fields [4]Field
}

// AddToTag gives r a To tag of its own (NewTag) when it needs one: any
// response but 100 Trying whose To has no tag yet (RFC 3261 §8.2.6.2).
func (r *Response) AddToTag() {
	if r.StatusCode > 100 && !r.To.IsZero() && r.To.Tag() == "" {
		r.To.Params = r.To.Params.Set("tag", NewTag())
	}
}
