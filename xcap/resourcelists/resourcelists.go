// Package resourcelists reads, checks and writes the documents of two XCAP
// application usages of RFC 4826: resource-lists (§3), a user's buddy
// lists, and rls-services (§4), the list URIs a resource list server
// answers SUBSCRIBE for, each backed by a buddy list or an inline list.
package resourcelists

import (
	"encoding/xml"
	"fmt"
	"net/url"
	"strings"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// Namespace and ContentType are those of resource-lists documents
// (RFC 4826 §3).
const (
	Namespace   = "urn:ietf:params:xml:ns:resource-lists"
	ContentType = "application/resource-lists+xml"
)

// Lists is a whole resource-lists document.
type Lists struct {
	Lists []List
}

// List is a named list of resources, possibly holding further lists. The
// order between entries, sub-lists and references of one list is not
// kept: each kind keeps its own order.
type List struct {
	// Name is the name attribute, by which XCAP node selectors and
	// rls-services documents find the list; "" when absent.
	Name        string
	DisplayName string
	Entries     []Entry
	Lists       []List
	// External holds the anchor of each <external>: the HTTP URI of a
	// list in another document, possibly on another server.
	External []string
	// EntryRefs holds the ref of each <entry-ref>: an entry of another
	// document, relative to the XCAP root.
	EntryRefs []string
}

// Entry is one resource of a list.
type Entry struct {
	URI, DisplayName string
}

type xmlLists struct {
	Lists []xmlList `xml:"urn:ietf:params:xml:ns:resource-lists list"`
}

type xmlList struct {
	Name        string        `xml:"name,attr"`
	DisplayName string        `xml:"urn:ietf:params:xml:ns:resource-lists display-name"`
	Lists       []xmlList     `xml:"urn:ietf:params:xml:ns:resource-lists list"`
	Entries     []xmlEntry    `xml:"urn:ietf:params:xml:ns:resource-lists entry"`
	External    []xmlExternal `xml:"urn:ietf:params:xml:ns:resource-lists external"`
	EntryRefs   []xmlEntryRef `xml:"urn:ietf:params:xml:ns:resource-lists entry-ref"`
}

type xmlEntry struct {
	URI         *string `xml:"uri,attr"`
	DisplayName string  `xml:"urn:ietf:params:xml:ns:resource-lists display-name"`
}

type xmlExternal struct {
	Anchor string `xml:"anchor,attr"`
}

type xmlEntryRef struct {
	Ref *string `xml:"ref,attr"`
}

// Parse reads a resource-lists document: at most MaxSize bytes, MaxDepth
// levels and MaxItems lists and entries, no DTD, root <resource-lists>
// in Namespace, every entry with a uri and every entry-ref with a ref.
// Elements of other namespaces are ignored, as the schema's extension
// points allow. URIs and display names are read without surrounding
// blanks; list names exactly. Parse does not check the constraints of
// RFC 4826 §3.4.5: Validate does.
func Parse(b []byte) (*Lists, error) {
	var x xmlLists
	if err := rules().Decode(b, Namespace, "resource-lists", &x); err != nil {
		return nil, err
	}
	c := converter{}
	ls := &Lists{Lists: c.lists(x.Lists)}
	if c.err != nil {
		return nil, c.err
	}
	return ls, nil
}

// ParseList reads a lone <list> element, as an XCAP client PUTs or GETs
// it through a node selector (RFC 4825): it must declare its own
// namespace, that of resource-lists or, for the inline list of a
// service, that of rls-services (whose children are still in
// resource-lists). The limits and rules of Parse apply.
func ParseList(b []byte) (*List, error) {
	b, err := rules().Prepare(b)
	if err != nil {
		return nil, err
	}
	space := Namespace
	if rootName(b).Space == ServicesNamespace {
		space = ServicesNamespace
	}
	if err := rules().Check(b, space, "list"); err != nil {
		return nil, err
	}
	var x xmlList
	if err := xmltext.NewDecoder(b).Decode(&x); err != nil {
		return nil, fmt.Errorf("resourcelists: %v", err)
	}
	c := converter{}
	l := c.list(&x)
	if c.err != nil {
		return nil, c.err
	}
	return &l, nil
}

// rootName returns the name of the first element of b, or the zero Name.
func rootName(b []byte) xml.Name {
	d := xmltext.NewDecoder(b)
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.Name{}
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name
		}
	}
}

// converter turns the decoded elements into Lists, counting items
// against MaxItems and keeping the first error.
type converter struct {
	items int
	err   error
}

func (c *converter) count(n int) bool {
	if c.err != nil {
		return false
	}
	if c.items += n; c.items > MaxItems {
		c.err = fmt.Errorf("resourcelists: more than %d lists, entries and services", MaxItems)
		return false
	}
	return true
}

func (c *converter) lists(x []xmlList) []List {
	if len(x) == 0 || !c.count(len(x)) {
		return nil
	}
	out := make([]List, 0, len(x))
	for i := range x {
		out = append(out, c.list(&x[i]))
		if c.err != nil {
			return nil
		}
	}
	return out
}

func (c *converter) list(x *xmlList) List {
	l := List{Name: x.Name, DisplayName: strings.TrimSpace(x.DisplayName)}
	if !c.count(len(x.Entries) + len(x.External) + len(x.EntryRefs)) {
		return l
	}
	if len(x.Entries) > 0 {
		l.Entries = make([]Entry, 0, len(x.Entries))
	}
	for _, e := range x.Entries {
		if e.URI == nil || strings.TrimSpace(*e.URI) == "" {
			c.err = fmt.Errorf("resourcelists: %s: <entry> without uri", describe(l.Name))
			return l
		}
		l.Entries = append(l.Entries, Entry{URI: strings.TrimSpace(*e.URI), DisplayName: strings.TrimSpace(e.DisplayName)})
	}
	for _, r := range x.EntryRefs {
		if r.Ref == nil || strings.TrimSpace(*r.Ref) == "" {
			c.err = fmt.Errorf("resourcelists: %s: <entry-ref> without ref", describe(l.Name))
			return l
		}
		l.EntryRefs = append(l.EntryRefs, strings.TrimSpace(*r.Ref))
	}
	for _, e := range x.External {
		l.External = append(l.External, strings.TrimSpace(e.Anchor))
	}
	l.Lists = c.lists(x.Lists)
	return l
}

func describe(name string) string {
	if name == "" {
		return "unnamed list"
	}
	return fmt.Sprintf("list %q", xmltext.Clip(name))
}

// Validate parses a resource-lists document and checks what its schema
// cannot say (RFC 4826 §3.4.5): the names of the lists of one parent are
// distinct, as are the entry URIs, entry-refs and external anchors of
// one list; an entry-ref is a relative path below the XCAP root and an
// anchor an absolute HTTP URI. The error names the offending list and
// value; the XCAP server answers it with 409.
func Validate(b []byte) error {
	ls, err := Parse(b)
	if err != nil {
		return err
	}
	if err := validateLists(ls.Lists, "", ""); err != nil {
		return fmt.Errorf("resourcelists: %w", err)
	}
	return nil
}

// validateLists checks the lists of one parent, whose path (list names
// joined by "/") is parent and whose description in messages is where,
// "" for the top level. Its errors lack the package prefix.
func validateLists(lists []List, parent, where string) error {
	names := make(map[string]struct{}, len(lists))
	for i := range lists {
		l := &lists[i]
		path := l.Name
		if parent != "" {
			path = parent + "/" + l.Name
		}
		if l.Name != "" {
			if _, dup := names[l.Name]; dup {
				if where == "" {
					return fmt.Errorf("two top-level lists named %q", xmltext.Clip(l.Name))
				}
				return fmt.Errorf("two lists named %q in %s", xmltext.Clip(l.Name), where)
			}
			names[l.Name] = struct{}{}
		}
		if err := validateList(l, path); err != nil {
			return err
		}
	}
	return nil
}

// validateList checks one list and its sub-lists; path names it in
// messages.
func validateList(l *List, path string) error {
	where := fmt.Sprintf("list %q", xmltext.Clip(path))
	if l.Name == "" {
		where = "unnamed list"
		if path != "" {
			where = fmt.Sprintf("unnamed list in %q", xmltext.Clip(path))
		}
	}
	uris := make(map[string]struct{}, len(l.Entries))
	for _, e := range l.Entries {
		if _, dup := uris[e.URI]; dup {
			return fmt.Errorf("%s: entry %q appears twice", where, xmltext.Clip(e.URI))
		}
		uris[e.URI] = struct{}{}
	}
	refs := make(map[string]struct{}, len(l.EntryRefs))
	for _, r := range l.EntryRefs {
		if _, dup := refs[r]; dup {
			return fmt.Errorf("%s: entry-ref %q appears twice", where, xmltext.Clip(r))
		}
		refs[r] = struct{}{}
		if !isRelativePath(r) {
			return fmt.Errorf("%s: entry-ref %q is not a path relative to the XCAP root", where, xmltext.Clip(r))
		}
	}
	anchors := make(map[string]struct{}, len(l.External))
	for _, a := range l.External {
		if _, dup := anchors[a]; dup {
			return fmt.Errorf("%s: external anchor %q appears twice", where, xmltext.Clip(a))
		}
		anchors[a] = struct{}{}
		if !isHTTPURI(a) {
			return fmt.Errorf("%s: external anchor %q is not an absolute HTTP URI", where, xmltext.Clip(a))
		}
	}
	return validateLists(l.Lists, path, where)
}

// isRelativePath reports whether ref is a relative-path reference of
// RFC 3986 §4.2: no scheme, no authority, not rooted.
func isRelativePath(ref string) bool {
	if ref == "" || ref[0] == '/' {
		return false
	}
	// A colon before the first slash, question mark or hash would make
	// the first segment a scheme.
	if i := strings.IndexAny(ref, ":/?#"); i >= 0 && ref[i] == ':' {
		return false
	}
	_, err := url.Parse(ref)
	return err == nil
}

func isHTTPURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Flatten returns the entries of l and, depth first, of its sub-lists:
// the resources a list subscription covers. A URI met again is skipped,
// keeping the first entry and its display name; at most limit entries
// are returned (none when limit is not positive). Entry-refs and
// externals point into other documents, which the caller resolves.
func (l *List) Flatten(limit int) []Entry {
	if limit <= 0 {
		return nil
	}
	var out []Entry
	l.flatten(&out, make(map[string]struct{}), limit)
	return out
}

func (l *List) flatten(out *[]Entry, seen map[string]struct{}, limit int) {
	for _, e := range l.Entries {
		if len(*out) >= limit {
			return
		}
		if _, dup := seen[e.URI]; dup {
			continue
		}
		seen[e.URI] = struct{}{}
		*out = append(*out, e)
	}
	for i := range l.Lists {
		if len(*out) >= limit {
			return
		}
		l.Lists[i].flatten(out, seen, limit)
	}
}

// NewDocument returns an empty resource-lists document, which a client
// fills with XCAP element PUTs.
func NewDocument() []byte {
	return []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"" + Namespace + "\">\n</resource-lists>\n")
}

// Append appends ls as a resource-lists document to dst.
func (ls *Lists) Append(dst []byte) []byte {
	dst = append(dst, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\""+Namespace+"\">\n"...)
	for i := range ls.Lists {
		dst = appendList(dst, &ls.Lists[i], false)
	}
	return append(dst, "</resource-lists>\n"...)
}

// Append appends l as a <list> element declaring its namespace, ready to
// be PUT into a document through XCAP or read by ParseList. Its children
// come in the order display name, entries, entry-refs, externals, lists.
func (l *List) Append(dst []byte) []byte {
	return appendList(dst, l, true)
}

func appendList(dst []byte, l *List, xmlns bool) []byte {
	dst = append(dst, "<list"...)
	if xmlns {
		dst = xmltext.AppendAttr(dst, "xmlns", Namespace)
	}
	if l.Name != "" {
		dst = xmltext.AppendAttr(dst, "name", l.Name)
	}
	dst = append(dst, ">\n"...)
	dst = appendDisplayName(dst, l.DisplayName)
	for _, e := range l.Entries {
		dst = appendEntry(dst, e, false)
	}
	for _, r := range l.EntryRefs {
		dst = append(dst, "<entry-ref"...)
		dst = xmltext.AppendAttr(dst, "ref", r)
		dst = append(dst, "/>\n"...)
	}
	for _, a := range l.External {
		dst = append(dst, "<external"...)
		dst = xmltext.AppendAttr(dst, "anchor", a)
		dst = append(dst, "/>\n"...)
	}
	for i := range l.Lists {
		dst = appendList(dst, &l.Lists[i], false)
	}
	return append(dst, "</list>\n"...)
}

// Append appends e as an <entry> element declaring its namespace, ready
// to be PUT into a list through XCAP.
func (e Entry) Append(dst []byte) []byte {
	return appendEntry(dst, e, true)
}

func appendEntry(dst []byte, e Entry, xmlns bool) []byte {
	dst = append(dst, "<entry"...)
	if xmlns {
		dst = xmltext.AppendAttr(dst, "xmlns", Namespace)
	}
	dst = xmltext.AppendAttr(dst, "uri", e.URI)
	if e.DisplayName == "" {
		return append(dst, "/>\n"...)
	}
	dst = append(dst, '>')
	dst = appendDisplayName(dst, e.DisplayName)
	return append(dst, "</entry>\n"...)
}

func appendDisplayName(dst []byte, name string) []byte {
	if name == "" {
		return dst
	}
	dst = append(dst, "<display-name>"...)
	dst = xmltext.AppendEscaped(dst, name, false)
	return append(dst, "</display-name>\n"...)
}
