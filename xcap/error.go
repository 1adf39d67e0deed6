package xcap

import (
	"errors"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// Sentinels of the Store and of Select and Apply.
var (
	// ErrNotFound is a document, or a node of one, that does not exist.
	ErrNotFound = errors.New("xcap: no such document")
	// ErrConflict is a compare-and-set write whose entity tag no longer
	// holds.
	ErrConflict = errors.New("xcap: document changed")
	// ErrSelector is a node selector or namespace binding that does not
	// parse (RFC 4825 §6.3, §6.4), or an edit it cannot name (the
	// namespace bindings of an element are read-only). The HTTP answer is
	// 400.
	ErrSelector = errors.New("xcap: bad node selector")
)

// ErrorNamespace is the namespace of the xcap-error document (RFC 4825
// §11).
const ErrorNamespace = "urn:ietf:params:xml:ns:xcap-error"

// ErrorContentType is the media type of an xcap-error body.
const ErrorContentType = "application/xcap-error+xml"

// Error is an XCAP error condition (RFC 4825 §11), answered 409 with its
// Body. Tag is the condition's element: "not-well-formed",
// "schema-validation-error", "constraint-failure", "uniqueness-failure",
// "cannot-insert", "cannot-delete", "no-parent", "not-utf-8",
// "not-xml-frag", "not-xml-att-value".
type Error struct {
	Tag, Phrase string
	// Exists lists the fields a uniqueness-failure found taken.
	Exists []Exists
	// Ancestor is the closest existing ancestor a no-parent names: an
	// HTTP URI in a server's answer. Apply sets it to the node selector of
	// that ancestor ("" for the document itself), which the server turns
	// into the URI.
	Ancestor string
}

// Exists is one field of a uniqueness-failure: the node selector of the
// value that is not unique and, optionally, values that would be.
type Exists struct {
	Field     string
	AltValues []string
}

// Error returns the condition and its phrase.
func (e *Error) Error() string {
	if e.Phrase == "" {
		return "xcap: " + e.Tag
	}
	return "xcap: " + e.Tag + ": " + e.Phrase
}

// Body returns the application/xcap-error+xml document describing the
// condition (RFC 4825 §11).
func (e *Error) Body() []byte {
	tag := e.Tag
	if !isNCName(tag) {
		// A caller's typo must not make the body ill-formed.
		tag = "constraint-failure"
	}
	b := []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<xcap-error xmlns="` + ErrorNamespace + `"><`)
	b = append(b, tag...)
	if e.Phrase != "" {
		b = xmltext.AppendAttr(b, "phrase", e.Phrase)
	}
	var inner []byte
	switch tag {
	case "uniqueness-failure":
		for _, x := range e.Exists {
			inner = append(inner, "<exists"...)
			inner = xmltext.AppendAttr(inner, "field", x.Field)
			if len(x.AltValues) == 0 {
				inner = append(inner, "/>"...)
				continue
			}
			inner = append(inner, '>')
			for _, v := range x.AltValues {
				inner = append(inner, "<alt-value>"...)
				inner = xmltext.AppendEscaped(inner, v, false)
				inner = append(inner, "</alt-value>"...)
			}
			inner = append(inner, "</exists>"...)
		}
	case "no-parent":
		if e.Ancestor != "" {
			inner = append(inner, "<ancestor>"...)
			inner = xmltext.AppendEscaped(inner, e.Ancestor, false)
			inner = append(inner, "</ancestor>"...)
		}
	}
	if len(inner) == 0 {
		b = append(b, "/>"...)
	} else {
		b = append(b, '>')
		b = append(b, inner...)
		b = append(b, "</"...)
		b = append(b, tag...)
		b = append(b, '>')
	}
	return append(b, "</xcap-error>\n"...)
}

// xcapError is shorthand for a condition with a phrase.
func xcapError(tag, phrase string) *Error { return &Error{Tag: tag, Phrase: phrase} }
