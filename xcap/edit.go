package xcap

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/internal/xmltext"
	"github.com/hlas-voip/hlas/xcap/internal/xmltree"
)

// Bounds of a document the server reads or builds.
const (
	maxDepth    = 64
	maxElements = 50000
	maxAttrs    = 256
)

var limits = xmltree.Limits{MaxDepth: maxDepth, MaxElements: maxElements, MaxAttrs: maxAttrs}

// Op is an edit Apply performs.
type Op int

// Edits (RFC 4825 §8.2 for PUT, §8.4 for DELETE).
const (
	// OpPut creates or replaces the selected element or attribute.
	OpPut Op = iota
	// OpDelete removes it.
	OpDelete
)

// Media types of the parts of a document (registered by RFC 4825).
const (
	ElementContentType   = "application/xcap-el+xml"
	AttributeContentType = "application/xcap-att+xml"
	NamespaceContentType = "application/xcap-ns+xml"
)

// names resolves the names of a node selector: prefixes from the URI's
// bindings, unprefixed element names in the AUID's namespace (RFC 4825
// §6.3), unprefixed attribute names in none.
type names struct {
	defaultNS string
	ns        map[string]string
}

func (n names) element(q qname) (string, error) {
	if q.prefix == "" {
		return n.defaultNS, nil
	}
	return n.bound(q.prefix)
}

func (n names) attribute(q qname) (string, error) {
	if q.prefix == "" {
		return "", nil
	}
	return n.bound(q.prefix)
}

func (n names) bound(prefix string) (string, error) {
	if prefix == "xml" {
		return xmltree.XMLNamespace, nil
	}
	if ns, ok := n.ns[prefix]; ok {
		return ns, nil
	}
	return "", selectorErrorf("prefix %q is not bound (add ?xmlns(%s=...))", xmltext.Clip(prefix), xmltext.Clip(prefix))
}

// resolved is a step with its names resolved.
type resolved struct {
	step
	space     string // of the element name
	attrSpace string // of the attribute test
}

// query is a node selector resolved for one document.
type query struct {
	sel       *selector
	steps     []resolved
	attrSpace string // of the terminal attribute
}

func resolve(sel *selector, n names) (*query, error) {
	q := &query{sel: sel, steps: make([]resolved, len(sel.steps))}
	for i, st := range sel.steps {
		r := resolved{step: st}
		var err error
		if !st.any {
			if r.space, err = n.element(st.name); err != nil {
				return nil, err
			}
		}
		if st.hasAttr {
			if r.attrSpace, err = n.attribute(st.attr); err != nil {
				return nil, err
			}
		}
		q.steps[i] = r
	}
	if sel.term == termAttribute {
		var err error
		if q.attrSpace, err = n.attribute(sel.attr); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// nameMatches reports whether element e has the step's name.
func (r *resolved) nameMatches(e *xmltree.Node) bool {
	return r.any || (e.Name.Local == r.name.local && e.Space == r.space)
}

// attrMatches reports whether element e passes the step's attribute test.
func (r *resolved) attrMatches(e *xmltree.Node) bool {
	if !r.hasAttr {
		return true
	}
	v, ok := e.AttrValue(r.attrSpace, r.attr.local)
	return ok && v == r.value
}

// eval returns the elements the first k steps select, as XPath would: a
// node set, evaluated step by step. Each step looks at the children of
// the set before it, so the work is bounded by the document's size times
// the number of steps.
func eval(doc *xmltree.Document, steps []resolved) []*xmltree.Node {
	if len(steps) == 0 {
		return nil
	}
	// The document node has one child element: the root is at position 1.
	first := &steps[0]
	if !first.nameMatches(doc.Root) || first.pos > 1 || !first.attrMatches(doc.Root) {
		return nil
	}
	set := []*xmltree.Node{doc.Root}
	for i := 1; i < len(steps) && len(set) > 0; i++ {
		st := &steps[i]
		var next []*xmltree.Node
		for _, ctx := range set {
			n := 0
			for _, c := range ctx.Children {
				if c.Kind != xmltree.Element || !st.nameMatches(c) {
					continue
				}
				n++
				if st.pos != 0 && n != st.pos {
					continue
				}
				if st.attrMatches(c) {
					next = append(next, c)
				}
				if st.pos != 0 {
					break
				}
			}
		}
		set = next
	}
	return set
}

// one returns the single element the first k steps select, or nil.
func (q *query) one(doc *xmltree.Document, k int) *xmltree.Node {
	if set := eval(doc, q.steps[:k]); len(set) == 1 {
		return set[0]
	}
	return nil
}

// noParent builds the no-parent error for a selector whose first k steps
// do not select one element: its ancestor is the longest shorter prefix
// that does ("" for the document).
func (q *query) noParent(doc *xmltree.Document, k int, phrase string) *Error {
	j := k - 1
	for ; j > 0; j-- {
		if q.one(doc, j) != nil {
			break
		}
	}
	texts := make([]string, j)
	for i := range j {
		texts[i] = q.steps[i].text
	}
	return &Error{Tag: "no-parent", Phrase: phrase, Ancestor: strings.Join(texts, "/")}
}

// parseDoc reads a document for Select and Apply.
func parseDoc(doc []byte) (*xmltree.Document, error) {
	d, err := xmltree.Parse(doc, limits)
	if err != nil {
		return nil, treeError(err, "not-well-formed")
	}
	return d, nil
}

// treeError names the XCAP condition of an xmltree error; syntaxTag is the
// condition of bad syntax (not-well-formed for a document, not-xml-frag
// for an element).
func treeError(err error, syntaxTag string) *Error {
	switch {
	case errors.Is(err, xmltree.ErrEncoding):
		return xcapError("not-utf-8", err.Error())
	case errors.Is(err, xmltree.ErrLimit):
		return xcapError("constraint-failure", err.Error())
	}
	return xcapError(syntaxTag, err.Error())
}

// Select returns the node the node selector names in doc (RFC 4825
// §7.6, §7.9, §7.10): an element written with the namespace declarations
// it needs from its ancestors, an attribute's value as XML writes it
// (escaped, without quotes: the body of an application/xcap-att+xml GET,
// which Apply takes back), or for "namespace::*" the element's name with
// the namespace bindings in scope. ns binds the selector's prefixes (the
// URI's xmlns() bindings); unprefixed element names are in defaultNS, the
// AUID's namespace. A selector that selects no node or several is
// ErrNotFound, one that does not parse ErrSelector, a document that does
// not parse an *Error.
func Select(doc []byte, defaultNS, selector string, ns map[string]string) ([]byte, error) {
	sel, err := parseSelector(selector)
	if err != nil {
		return nil, err
	}
	d, err := parseDoc(doc)
	if err != nil {
		return nil, err
	}
	return selectNode(d, sel, names{defaultNS, ns})
}

// selectNode is Select on a parsed document and selector.
func selectNode(d *xmltree.Document, sel *selector, n names) ([]byte, error) {
	q, err := resolve(sel, n)
	if err != nil {
		return nil, err
	}
	e := q.one(d, len(q.steps))
	if e == nil {
		return nil, ErrNotFound
	}
	switch sel.term {
	case termAttribute:
		v, ok := e.AttrValue(q.attrSpace, sel.attr.local)
		if !ok {
			return nil, ErrNotFound
		}
		return xmltext.AppendEscaped(nil, v, true), nil
	case termNamespace:
		return namespaceBindings(e), nil
	}
	return e.AppendStandalone(nil), nil
}

// namespaceBindings writes the element e with the namespace bindings in
// scope as its only attributes (RFC 4825 §7.10: the application/xcap-ns+xml
// body).
func namespaceBindings(e *xmltree.Node) []byte {
	scope := e.InScope()
	b := []byte{'<'}
	b = append(b, e.Name.String()...)
	if v, ok := scope[""]; ok {
		b = xmltext.AppendAttr(b, "xmlns", v)
	}
	prefixes := make([]string, 0, len(scope))
	for p := range scope {
		if p != "" {
			prefixes = append(prefixes, p)
		}
	}
	slices.Sort(prefixes)
	for _, p := range prefixes {
		b = xmltext.AppendAttr(b, "xmlns:"+p, scope[p])
	}
	return append(b, "/>"...)
}

// Apply performs an XCAP PUT (op OpPut, value the element — an
// application/xcap-el+xml body — or the attribute value, escaped as in an
// application/xcap-att+xml body) or DELETE of the node the selector names
// in doc, and returns the new document (RFC 4825 §7.4, §7.5, §7.7, §7.8, §8.2, §8.4).
// Everything else in doc stays as it was: other elements, unknown
// extension elements, namespace prefixes, text (comments and processing
// instructions too, though an XCAP client may not count on them). ns and
// defaultNS resolve the selector's names as for Select.
//
// The conditions of RFC 4825 are *Error values: no-parent when the
// element to put something in does not exist, cannot-insert when the
// selector would not select the new element afterwards, cannot-delete when
// it would still select one after a DELETE, not-xml-frag,
// not-xml-att-value, not-utf-8. DELETE of a node that does not exist is
// ErrNotFound. Apply does not validate the result against the AUID's
// schema: that is the caller's business.
func Apply(doc []byte, defaultNS, selector string, ns map[string]string, op Op, value []byte) ([]byte, error) {
	out, _, err := apply(doc, defaultNS, selector, ns, op, value)
	return out, err
}

// apply is Apply, and reports whether a PUT created the node (201) rather
// than replacing it (200).
func apply(doc []byte, defaultNS, selector string, ns map[string]string, op Op, value []byte) ([]byte, bool, error) {
	sel, err := parseSelector(selector)
	if err != nil {
		return nil, false, err
	}
	q, err := resolve(sel, names{defaultNS, ns})
	if err != nil {
		return nil, false, err
	}
	d, err := parseDoc(doc)
	if err != nil {
		return nil, false, err
	}
	created, err := edit(d, q, op, value)
	if err != nil {
		return nil, false, err
	}
	return d.Bytes(), created, nil
}

// edit performs op on a parsed document.
func edit(d *xmltree.Document, q *query, op Op, value []byte) (created bool, err error) {
	switch {
	case q.sel.term == termNamespace:
		return false, selectorErrorf("namespace bindings are read-only")
	case op == OpPut && q.sel.term == termAttribute:
		return putAttribute(d, q, value)
	case op == OpPut:
		return putElement(d, q, value)
	case op == OpDelete && q.sel.term == termAttribute:
		return false, deleteAttribute(d, q)
	case op == OpDelete:
		return false, deleteElement(d, q)
	}
	return false, fmt.Errorf("xcap: unknown op %d", op)
}

// putElement inserts or replaces the element the selector names with the
// fragment value (RFC 4825 §8.2.3).
func putElement(d *xmltree.Document, q *query, value []byte) (bool, error) {
	k := len(q.steps)
	if old := q.one(d, k); old != nil {
		el, err := parseFragment(value, old.Parent, d)
		if err != nil {
			return false, err
		}
		if old.Parent == nil {
			d.Root = el
		} else {
			replaceChild(old.Parent, old, el)
		}
		if q.one(d, k) != el {
			return false, xcapError("cannot-insert", "the node selector would not select the new element")
		}
		return false, nil
	}
	if k == 1 {
		return false, xcapError("cannot-insert", "a document has one root element")
	}
	parent := q.one(d, k-1)
	if parent == nil {
		return false, q.noParent(d, k-1, "the parent element does not exist")
	}
	el, err := parseFragment(value, parent, d)
	if err != nil {
		return false, err
	}
	if err := insert(parent, el, &q.steps[k-1]); err != nil {
		return false, err
	}
	if q.one(d, k) != el {
		return false, xcapError("cannot-insert", "the node selector would not select the new element")
	}
	return true, nil
}

// parseFragment reads an element body to live under parent (nil: the
// root) and checks that the document stays within the limits with it.
func parseFragment(value []byte, parent *xmltree.Node, d *xmltree.Document) (*xmltree.Node, error) {
	el, err := xmltree.ParseFragment(value, parent, limits)
	if err != nil {
		return nil, treeError(err, "not-xml-frag")
	}
	if d.Root.Count()+el.Count() > maxElements {
		return nil, xcapError("constraint-failure", fmt.Sprintf("more than %d elements", maxElements))
	}
	return el, nil
}

func replaceChild(parent, old, el *xmltree.Node) {
	for i, c := range parent.Children {
		if c == old {
			parent.Children[i] = el
			el.Parent = parent
			return
		}
	}
}

// insert places a new element among the children of parent where the last
// step st will find it (RFC 4825 §8.2.3): for a position n, after the
// (n-1)th sibling the step's name matches (before the first for n = 1);
// without a position, after the last sibling of the element's name, or
// after the last child element when there is none.
func insert(parent, el *xmltree.Node, st *resolved) error {
	var matching []int // indexes in parent.Children
	last := -1         // the last child element
	for i, c := range parent.Children {
		if c.Kind != xmltree.Element {
			continue
		}
		last = i
		if st.pos == 0 && st.any {
			// "*" without a position: siblings of the new element's name.
			if c.Space == el.Space && c.Name.Local == el.Name.Local {
				matching = append(matching, i)
			}
		} else if st.nameMatches(c) {
			matching = append(matching, i)
		}
	}
	at := -1 // insert before this index
	switch {
	case st.pos == 0 && len(matching) > 0:
		at = matching[len(matching)-1] + 1
	case st.pos == 0:
		at = last + 1
	case st.pos-1 > len(matching):
		return xcapError("cannot-insert", fmt.Sprintf("position %d is beyond the %d elements there", st.pos, len(matching)))
	case st.pos == 1 && len(matching) > 0:
		at = matching[0]
	case st.pos == 1:
		at = last + 1
	default:
		at = matching[st.pos-2] + 1
	}
	if at <= 0 && last < 0 {
		// No child element: the new element goes last, after any text.
		at = len(parent.Children)
	}
	el.Parent = parent
	parent.Children = append(parent.Children, nil)
	copy(parent.Children[at+1:], parent.Children[at:])
	parent.Children[at] = el
	return nil
}

// putAttribute sets the attribute the selector names (RFC 4825 §7.7).
func putAttribute(d *xmltree.Document, q *query, value []byte) (bool, error) {
	k := len(q.steps)
	e := q.one(d, k)
	if e == nil {
		return false, q.noParent(d, k, "the element does not exist")
	}
	if !utf8.Valid(value) {
		return false, xcapError("not-utf-8", "the attribute value is not UTF-8")
	}
	v, err := decodeAttValue(string(value))
	if err != nil {
		return false, xcapError("not-xml-att-value", err.Error())
	}
	local := q.sel.attr.local
	if q.sel.attr.prefix == "xmlns" || (q.sel.attr.prefix == "" && local == "xmlns") {
		return false, xcapError("cannot-insert", "namespace declarations are not attributes")
	}
	if i := e.AttrIndex(q.attrSpace, local); i >= 0 {
		e.Attr[i].Value = v
		return false, nil
	}
	if len(e.Attr) >= maxAttrs-1 {
		return false, xcapError("constraint-failure", fmt.Sprintf("more than %d attributes", maxAttrs))
	}
	name := xmltree.Name{Local: local}
	if q.attrSpace != "" {
		prefix, ok := e.PrefixFor(q.attrSpace, false)
		if !ok {
			// Declare a prefix no ancestor binds, so that nothing below e
			// changes meaning.
			prefix = freePrefix(e, q.sel.attr.prefix)
			e.Attr = append(e.Attr, xmltree.Attr{Name: xmltree.Name{Prefix: "xmlns", Local: prefix}, Space: xmltree.XMLNSNamespace, Value: q.attrSpace})
		}
		name.Prefix = prefix
	}
	e.Attr = append(e.Attr, xmltree.Attr{Name: name, Space: q.attrSpace, Value: v})
	return true, nil
}

// freePrefix returns want, or a variant of it, that is bound nowhere in
// scope at e.
func freePrefix(e *xmltree.Node, want string) string {
	if want == "" || want == "xml" {
		want = "ns"
	}
	p := want
	for i := 1; ; i++ {
		if _, bound := e.Lookup(p); !bound {
			return p
		}
		p = fmt.Sprintf("%s%d", want, i)
	}
}

// deleteAttribute removes the attribute the selector names (RFC 4825
// §7.8).
func deleteAttribute(d *xmltree.Document, q *query) error {
	e := q.one(d, len(q.steps))
	if e == nil {
		return ErrNotFound
	}
	i := e.AttrIndex(q.attrSpace, q.sel.attr.local)
	if i < 0 || q.sel.attr.prefix == "xmlns" {
		return ErrNotFound
	}
	e.Attr = append(e.Attr[:i], e.Attr[i+1:]...)
	return nil
}

// deleteElement removes the element the selector names, unless the
// selector would then select another one (RFC 4825 §8.4: a DELETE must
// be idempotent).
func deleteElement(d *xmltree.Document, q *query) error {
	k := len(q.steps)
	e := q.one(d, k)
	if e == nil {
		return ErrNotFound
	}
	if e.Parent == nil {
		return xcapError("cannot-delete", "the root element goes with the document: DELETE the document")
	}
	p := e.Parent
	for i, c := range p.Children {
		if c == e {
			p.Children = append(p.Children[:i], p.Children[i+1:]...)
			break
		}
	}
	if len(eval(d, q.steps)) > 0 {
		return xcapError("cannot-delete", "the node selector would select another element afterwards")
	}
	return nil
}
