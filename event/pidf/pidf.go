// Package pidf reads, validates and composes presence documents: PIDF
// (RFC 3863) with the person element of the presence data model (RFC 4479)
// and the rich presence extensions RPID (RFC 4480).
//
// Parse keeps every top-level element of a publication as raw XML, made
// self-contained (the namespace declarations it inherits are copied onto it),
// so that extensions the server does not understand reach the watchers
// unchanged when Compose merges the publications of several devices.
package pidf

import (
	"slices"
	"strings"
	"time"
)

// Namespaces and the media type of PIDF and its extensions.
const (
	// NS is the PIDF namespace (RFC 3863 §4.1).
	NS = "urn:ietf:params:xml:ns:pidf"
	// NSDataModel is the namespace of person and device (RFC 4479 §4).
	NSDataModel = "urn:ietf:params:xml:ns:pidf:data-model"
	// NSRPID is the namespace of the rich presence elements (RFC 4480 §6).
	NSRPID = "urn:ietf:params:xml:ns:pidf:rpid"
	// ContentType is the media type of a PIDF body (RFC 3863 §7.1).
	ContentType = "application/pidf+xml"
)

// Limits enforced by Parse. They bound the memory and time one publication
// can cost; a body above MaxSize should be answered with 413.
const (
	MaxSize  = 64 << 10
	MaxDepth = 32
)

// Document is one presence document: a publication of one device, or the
// composed state of a presentity.
type Document struct {
	// Entity is the presentity URI (the entity attribute of <presence>).
	Entity string
	// Tuples are the presence tuples, one per service or device.
	Tuples []Tuple
	// Persons are the RFC 4479 <dm:person> elements.
	Persons []Person
	// Notes are the document-level <note> elements.
	Notes []Note
	// Extensions are the other top-level elements (RFC 4479 <dm:device>,
	// unknown namespaces), kept raw so that they survive composition.
	Extensions []Extension
}

// Note is a free-text note with its optional language (xml:lang).
type Note struct {
	Lang string
	Text string
}

// Tuple is one <tuple> of a presence document (RFC 3863 §4.1.2).
type Tuple struct {
	// ID is the id attribute; it must match the id inside Raw.
	ID string
	// Basic is the <basic> status, "open" or "closed", or empty when the
	// status carries no basic element.
	Basic string
	// Contact is the <contact> URI and Priority its priority attribute as
	// written (a qvalue such as "0.8"), both empty when absent.
	Contact  string
	Priority string
	// Notes are the tuple's <note> elements.
	Notes []Note
	// Timestamp is the <timestamp>, zero when absent or not a valid
	// xs:dateTime (an unreadable timestamp is not worth rejecting a
	// publication for).
	Timestamp time.Time
	// Activities are RPID activities found in the tuple or its status,
	// where clients that predate RFC 4480 put them.
	Activities []string
	// Raw is the whole element as received, with inherited namespace
	// declarations copied onto it, except those of the standard prefixes
	// that Compose declares on its root (default PIDF, dm, rpid). When Raw
	// is set, Compose writes it instead of the fields above.
	Raw []byte
}

// Person is an RFC 4479 <dm:person> element.
type Person struct {
	ID string
	// Activities are the RPID activities (RFC 4480 §3.2), as element local
	// names ("away", "on-the-phone", ...); for <rpid:other> its text.
	Activities []string
	// Notes are the <dm:note> elements.
	Notes []Note
	// Timestamp is the <dm:timestamp>, zero when absent or invalid.
	Timestamp time.Time
	// Raw is the element as received, made self-contained like Tuple.Raw;
	// when set, Compose writes it instead of the fields above.
	Raw []byte
}

// Extension is a top-level element that is neither tuple, note nor person.
type Extension struct {
	// Space and Local are the element's namespace and local name.
	Space string
	Local string
	// ID is its id attribute, if any (ids share one space per document,
	// so Compose keeps them unique).
	ID string
	// Raw is the element, self-contained like Tuple.Raw.
	Raw []byte
}

// Activities returns the RPID activities of the presentity: those of the
// last person element that has any, else those found in the tuples.
func (d *Document) Activities() []string {
	for i := len(d.Persons) - 1; i >= 0; i-- {
		if len(d.Persons[i].Activities) > 0 {
			return d.Persons[i].Activities
		}
	}
	var out []string
	for _, t := range d.Tuples {
		for _, a := range t.Activities {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// Note returns the most telling note: that of a person (the last one that
// has a note), else the first document-level note, else the first tuple
// note; empty when there is none.
func (d *Document) Note() string {
	for i := len(d.Persons) - 1; i >= 0; i-- {
		if n := firstNote(d.Persons[i].Notes); n != "" {
			return n
		}
	}
	if n := firstNote(d.Notes); n != "" {
		return n
	}
	for _, t := range d.Tuples {
		if n := firstNote(t.Notes); n != "" {
			return n
		}
	}
	return ""
}

// Open reports whether any tuple's basic status is open, the usual reading
// of "online" (RFC 3863 §4.1.4).
func (d *Document) Open() bool {
	for _, t := range d.Tuples {
		if t.Basic == "open" {
			return true
		}
	}
	return false
}

func firstNote(ns []Note) string {
	for _, n := range ns {
		if t := strings.TrimSpace(n.Text); t != "" {
			return t
		}
	}
	return ""
}

// isKnownActivity reports whether a is an activity element of RFC 4480
// §3.2; Compose writes any other activity as <rpid:other>.
func isKnownActivity(a string) bool {
	switch a {
	case "appointment", "away", "breakfast", "busy", "dinner", "holiday",
		"in-transit", "looking-for-work", "lunch", "meal", "meeting",
		"on-the-phone", "performance", "permanent-absence", "playing",
		"presentation", "shopping", "sleeping", "spectator", "steering",
		"travel", "tv", "unknown", "vacation", "working", "worship":
		return true
	}
	return false
}
