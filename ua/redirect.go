package ua

import (
	"sort"
	"strconv"

	"github.com/hlas-voip/hlas/sip"
)

// maxRedirects bounds the redirections one call follows, against
// redirect loops (RFC 3261 §8.1.3.4).
const maxRedirects = 5

// redirects follows 3xx responses for one outgoing call (RFC 3261
// §8.1.3.4): the Contacts of a 300, 301 or 302 become the next
// Request-URIs, highest q first, each tried once; a 305 Use Proxy sends
// the request again through the proxy in its Contact (RFC 3261 §21.3.5).
type redirects struct {
	n     int
	tried map[string]bool
	queue []sip.URI
	proxy *sip.URI // from a 305: where requests go next
}

// follow rewrites req for the next try after res and reports whether
// there is one.
func (r *redirects) follow(res *sip.Response, req *sip.Request) bool {
	if r.n >= maxRedirects {
		return false
	}
	if r.tried == nil {
		r.tried = map[string]bool{req.URI.String(): true}
	}
	switch res.StatusCode {
	case 305:
		if len(res.Contact) == 0 || !res.Contact[0].URI.IsSIP() || r.proxy != nil {
			return false
		}
		pu := res.Contact[0].URI
		pu.Params = pu.Params.Set("lr", "")
		r.proxy = &pu
		req.Route = []sip.Address{{URI: pu}}
		r.n++
		return true
	case 300, 301, 302:
	default:
		return false
	}
	contacts := append([]sip.Address(nil), res.Contact...)
	sort.SliceStable(contacts, func(i, j int) bool { return contactQ(contacts[i]) > contactQ(contacts[j]) })
	var fresh []sip.URI
	for _, c := range contacts {
		if c.URI.IsSIP() && !r.tried[c.URI.String()] {
			fresh = append(fresh, c.URI)
			r.tried[c.URI.String()] = true
		}
	}
	r.queue = append(fresh, r.queue...)
	if len(r.queue) == 0 {
		return false
	}
	req.URI, r.queue = r.queue[0], r.queue[1:]
	r.n++
	return true
}

// contactQ is a Contact's q parameter, 1 when absent (RFC 3261 §20.10).
func contactQ(a sip.Address) float64 {
	if s, ok := a.Params.Get("q"); ok {
		if q, err := strconv.ParseFloat(s, 64); err == nil {
			return q
		}
	}
	return 1
}
