// Package rlmi writes and reads Resource List Meta-Information documents
// and the multipart/related bodies that carry them (RFC 4662): a NOTIFY
// of a list subscription holds one RLMI document naming the list's
// resources and, in further body parts, the state of each resource
// instance the document points to by Content-ID.
package rlmi

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// NS is the RLMI namespace and ContentType its media type (RFC 4662 §5).
const (
	NS          = "urn:ietf:params:xml:ns:rlmi"
	ContentType = "application/rlmi+xml"
)

// List is a whole RLMI document: the state of one list subscription.
type List struct {
	// URI is the list's URI, the Request-URI of the SUBSCRIBE.
	URI string
	// Version counts the documents sent on one subscription, from 0; the
	// watcher uses it to spot lost or reordered NOTIFYs (RFC 4662 §5).
	Version uint32
	// FullState is true when the document lists every resource, false
	// when it carries only those that changed.
	FullState bool
	Names     []Name
	Resources []Resource
}

// Name is a human-readable name of a list or resource, in the language
// Lang ("en"; "" when not given).
type Name struct {
	Lang, Text string
}

// Resource is one member of the list.
type Resource struct {
	URI   string
	Names []Name
	// Instances are the back-end subscriptions to the resource; a resource
	// whose state is not known yet has none.
	Instances []Instance
}

// Instance is one back-end subscription to a resource (RFC 4662 §5).
type Instance struct {
	// ID names the instance, stable across the documents of one
	// subscription.
	ID string
	// State is "active", "pending" or "terminated", the subscription state
	// of the back-end subscription.
	State string
	// Reason tells why a terminated instance ended ("rejected",
	// "noresource", "timeout", ...); "" when none.
	Reason string
	// CID is the Content-ID, without the angle brackets, of the body part
	// holding the instance's state; "" when the NOTIFY carries none.
	CID string
}

// Append appends l as an RLMI document to dst. The values are written as
// given; all text is escaped.
func (l *List) Append(dst []byte) []byte {
	dst = slices.Grow(dst, l.size())
	dst = append(dst, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<list xmlns=\""+NS+"\""...)
	dst = xmltext.AppendAttr(dst, "uri", l.URI)
	dst = append(dst, ` version="`...)
	dst = strconv.AppendUint(dst, uint64(l.Version), 10)
	if l.FullState {
		dst = append(dst, `" fullState="true">`+"\n"...)
	} else {
		dst = append(dst, `" fullState="false">`+"\n"...)
	}
	dst = appendNames(dst, l.Names)
	for i := range l.Resources {
		r := &l.Resources[i]
		dst = append(dst, "<resource"...)
		dst = xmltext.AppendAttr(dst, "uri", r.URI)
		dst = append(dst, ">\n"...)
		dst = appendNames(dst, r.Names)
		for j := range r.Instances {
			in := &r.Instances[j]
			dst = append(dst, "<instance"...)
			dst = xmltext.AppendAttr(dst, "id", in.ID)
			dst = xmltext.AppendAttr(dst, "state", in.State)
			if in.Reason != "" {
				dst = xmltext.AppendAttr(dst, "reason", in.Reason)
			}
			if in.CID != "" {
				dst = xmltext.AppendAttr(dst, "cid", in.CID)
			}
			dst = append(dst, "/>\n"...)
		}
		dst = append(dst, "</resource>\n"...)
	}
	return append(dst, "</list>\n"...)
}

func appendNames(dst []byte, names []Name) []byte {
	for _, n := range names {
		dst = append(dst, "<name"...)
		if n.Lang != "" {
			dst = xmltext.AppendAttr(dst, "xml:lang", n.Lang)
		}
		dst = append(dst, '>')
		dst = xmltext.AppendEscaped(dst, n.Text, false)
		dst = append(dst, "</name>\n"...)
	}
	return dst
}

// size estimates the length of the document, so that Append grows dst
// once.
func (l *List) size() int {
	n := 128 + len(l.URI) + namesSize(l.Names)
	for i := range l.Resources {
		r := &l.Resources[i]
		n += 32 + len(r.URI) + namesSize(r.Names)
		for j := range r.Instances {
			in := &r.Instances[j]
			n += 48 + len(in.ID) + len(in.State) + len(in.Reason) + len(in.CID)
		}
	}
	return n + n/8
}

func namesSize(names []Name) int {
	n := 0
	for _, nm := range names {
		n += 32 + len(nm.Lang) + len(nm.Text)
	}
	return n
}

type xmlList struct {
	URI       *string       `xml:"uri,attr"`
	Version   *string       `xml:"version,attr"`
	FullState *string       `xml:"fullState,attr"`
	Names     []xmlName     `xml:"urn:ietf:params:xml:ns:rlmi name"`
	Resources []xmlResource `xml:"urn:ietf:params:xml:ns:rlmi resource"`
}

type xmlName struct {
	Lang string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
	Text string `xml:",chardata"`
}

type xmlResource struct {
	URI       string        `xml:"uri,attr"`
	Names     []xmlName     `xml:"urn:ietf:params:xml:ns:rlmi name"`
	Instances []xmlInstance `xml:"urn:ietf:params:xml:ns:rlmi instance"`
}

type xmlInstance struct {
	ID     string `xml:"id,attr"`
	State  string `xml:"state,attr"`
	Reason string `xml:"reason,attr"`
	CID    string `xml:"cid,attr"`
}

// Parse reads and validates an RLMI document: at most MaxSize bytes and
// MaxDepth levels, no DTD, root <list> in NS with uri, version and
// fullState, every resource with a uri, every instance with an id and a
// state of RFC 4662 §5, and no more than MaxResources, MaxInstances and
// MaxNames elements. Elements of other namespaces (the content of an
// <instance> may be anything) are ignored. A cid written in angle
// brackets, as some servers do, is read without them. The error says
// what is wrong.
func Parse(b []byte) (*List, error) {
	var x xmlList
	if err := rules().Decode(b, NS, "list", &x); err != nil {
		return nil, err
	}
	l := &List{}
	switch {
	case x.URI == nil || strings.TrimSpace(*x.URI) == "":
		return nil, errors.New("rlmi: <list> has no uri")
	case x.Version == nil:
		return nil, errors.New("rlmi: <list> has no version")
	case x.FullState == nil:
		return nil, errors.New("rlmi: <list> has no fullState")
	case len(x.Names) > MaxNames:
		return nil, fmt.Errorf("rlmi: <list> has more than %d names", MaxNames)
	case len(x.Resources) > MaxResources:
		return nil, fmt.Errorf("rlmi: more than %d resources", MaxResources)
	}
	l.URI = strings.TrimSpace(*x.URI)
	v, err := strconv.ParseUint(strings.TrimSpace(*x.Version), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("rlmi: version %q is not a 32-bit unsigned number", xmltext.Clip(*x.Version))
	}
	l.Version = uint32(v)
	// xs:boolean: the words or the digits, with surrounding blanks.
	switch strings.TrimSpace(*x.FullState) {
	case "true", "1":
		l.FullState = true
	case "false", "0":
	default:
		return nil, fmt.Errorf("rlmi: fullState %q, want true or false", xmltext.Clip(*x.FullState))
	}
	l.Names = convertNames(x.Names)
	l.Resources = make([]Resource, 0, len(x.Resources))
	for i := range x.Resources {
		r, err := convertResource(&x.Resources[i])
		if err != nil {
			return nil, err
		}
		l.Resources = append(l.Resources, r)
	}
	return l, nil
}

func convertNames(x []xmlName) []Name {
	if len(x) == 0 {
		return nil
	}
	names := make([]Name, len(x))
	for i, n := range x {
		names[i] = Name{Lang: strings.TrimSpace(n.Lang), Text: strings.TrimSpace(n.Text)}
	}
	return names
}

func convertResource(x *xmlResource) (Resource, error) {
	r := Resource{URI: strings.TrimSpace(x.URI)}
	switch {
	case r.URI == "":
		return r, errors.New("rlmi: <resource> has no uri")
	case len(x.Names) > MaxNames:
		return r, fmt.Errorf("rlmi: resource %q has more than %d names", xmltext.Clip(r.URI), MaxNames)
	case len(x.Instances) > MaxInstances:
		return r, fmt.Errorf("rlmi: resource %q has more than %d instances", xmltext.Clip(r.URI), MaxInstances)
	}
	r.Names = convertNames(x.Names)
	if len(x.Instances) > 0 {
		r.Instances = make([]Instance, 0, len(x.Instances))
	}
	for _, xi := range x.Instances {
		in := Instance{
			ID:     strings.TrimSpace(xi.ID),
			State:  strings.TrimSpace(xi.State),
			Reason: strings.TrimSpace(xi.Reason),
			CID:    trimCID(xi.CID),
		}
		switch {
		case in.ID == "":
			return r, fmt.Errorf("rlmi: resource %q: <instance> has no id", xmltext.Clip(r.URI))
		case in.State != "active" && in.State != "pending" && in.State != "terminated":
			return r, fmt.Errorf("rlmi: resource %q: instance %q: state %q, want active, pending or terminated",
				xmltext.Clip(r.URI), xmltext.Clip(in.ID), xmltext.Clip(in.State))
		}
		r.Instances = append(r.Instances, in)
	}
	return r, nil
}

// trimCID drops blanks and the angle brackets of a Content-ID written as
// in a header.
func trimCID(s string) string {
	s = strings.TrimSpace(s)
	for len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}
