package xcap

import (
	"net/url"
	"strings"
)

// Ref is what an XCAP URI names, read from its path whatever its scheme,
// host and root: one document names another this way (the
// <resource-list> of an rls-services document), and the server resolves
// such a name in its own store.
type Ref struct {
	// AUID is the application usage ("resource-lists"), User the store
	// key of the XUI ("alice@example.com"), Doc the document's path below
	// the user's directory ("index").
	AUID, User, Doc string
	// Selector is the node selector, unescaped ("" for the whole
	// document).
	Selector string
}

// ParseRef reads an XCAP URI of a user's document. ok is false for
// anything else (a global document, a malformed URI).
func ParseRef(ref string) (r Ref, ok bool) {
	u, err := url.Parse(ref)
	if err != nil {
		return r, false
	}
	segs := strings.Split(u.EscapedPath(), "/")
	users := -1
	for i := 1; i+2 < len(segs); i++ {
		if segs[i] == "users" {
			users = i
			break
		}
	}
	if users < 1 {
		return r, false
	}
	if r.AUID, err = url.PathUnescape(segs[users-1]); err != nil || r.AUID == "" {
		return r, false
	}
	xui, err := url.PathUnescape(segs[users+1])
	if err != nil {
		return r, false
	}
	user, domain, ok := parseXUI(xui)
	if !ok {
		return r, false
	}
	r.User = user + "@" + domain
	rest := segs[users+2:]
	var names []string
	for i, seg := range rest {
		if seg == "~~" {
			if r.Selector, err = url.PathUnescape(strings.Join(rest[i+1:], "/")); err != nil {
				return r, false
			}
			break
		}
		n, err := url.PathUnescape(seg)
		if err != nil || n == "" || n == "." || n == ".." {
			return r, false
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return r, false
	}
	r.Doc = strings.Join(names, "/")
	return r, true
}
