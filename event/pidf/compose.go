package pidf

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"time"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

const (
	xmlDecl  = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	rootOpen = "<presence xmlns=\"" + NS + "\" xmlns:dm=\"" + NSDataModel + "\" xmlns:rpid=\"" + NSRPID + "\" entity=\""
)

// Compose merges the documents of the devices of one presentity into the
// one document its watchers receive (RFC 3863 §4.1, RFC 4479 §3.4): every
// tuple of every document (one tuple per device), the person elements of
// the last document that has any (the most recent publication wins), the
// document notes of all, without repeats, and the other top-level elements
// of all. Ids are kept unique across the result: a repeated id gets a
// "-2", "-3", ... suffix and a missing one is generated. Nil documents are
// skipped. Element order follows the PIDF schema: tuples, notes, others.
func Compose(entity string, docs ...*Document) []byte {
	size := len(xmlDecl) + len(rootOpen) + len(entity) + 32
	for _, d := range docs {
		if d == nil {
			continue
		}
		for i := range d.Tuples {
			size += len(d.Tuples[i].Raw) + 128
		}
		for i := range d.Persons {
			size += len(d.Persons[i].Raw) + 128
		}
		for i := range d.Extensions {
			size += len(d.Extensions[i].Raw) + 1
		}
		for _, n := range d.Notes {
			size += len(n.Text) + len(n.Lang) + 32
		}
	}
	b := make([]byte, 0, size)
	b = append(b, xmlDecl...)
	b = append(b, rootOpen...)
	b = xmltext.AppendEscaped(b, entity, true)
	b = append(b, "\">\n"...)

	var arr [16]string
	ids := idSet{list: arr[:0]}
	for _, d := range docs {
		if d == nil {
			continue
		}
		for i := range d.Tuples {
			var id string
			id, ids = ids.unique(d.Tuples[i].ID, "t")
			b = appendTuple(b, &d.Tuples[i], id)
			b = append(b, '\n')
		}
	}
	for di, d := range docs {
		if d == nil {
			continue
		}
		for ni, n := range d.Notes {
			if noteSeen(docs[:di], d.Notes[:ni], n) {
				continue
			}
			b = append(b, "<note"...)
			if n.Lang != "" {
				b = xmltext.AppendAttr(b, "xml:lang", n.Lang)
			}
			b = append(b, '>')
			b = xmltext.AppendEscaped(b, n.Text, false)
			b = append(b, "</note>\n"...)
		}
	}
	for i := len(docs) - 1; i >= 0; i-- {
		if docs[i] == nil || len(docs[i].Persons) == 0 {
			continue
		}
		for j := range docs[i].Persons {
			p := &docs[i].Persons[j]
			var id string
			id, ids = ids.unique(p.ID, "p")
			b = appendPerson(b, p, id)
			b = append(b, '\n')
		}
		break
	}
	for _, d := range docs {
		if d == nil {
			continue
		}
		for i := range d.Extensions {
			x := &d.Extensions[i]
			if x.ID == "" {
				b = append(b, x.Raw...)
			} else {
				var id string
				id, ids = ids.unique(x.ID, "x")
				b = appendRaw(b, x.Raw, x.ID, id)
			}
			b = append(b, '\n')
		}
	}
	return append(b, "</presence>\n"...)
}

// Closed returns the document sent for a presentity that has no
// publication: one tuple whose basic status is closed. RFC 3856 §6.6.4
// allows either this or a document without tuples; a closed tuple is the
// one that every client reads as "offline", while several (baresip among
// them) leave an empty document as "unknown".
func Closed(entity string) []byte {
	return Compose(entity, &Document{Tuples: []Tuple{{ID: "offline", Basic: "closed"}}})
}

func noteSeen(before []*Document, same []Note, n Note) bool {
	for _, o := range same {
		if o == n {
			return true
		}
	}
	for _, d := range before {
		if d == nil {
			continue
		}
		for _, o := range d.Notes {
			if o == n {
				return true
			}
		}
	}
	return false
}

func appendTuple(b []byte, t *Tuple, id string) []byte {
	if t.Raw != nil {
		return appendRaw(b, t.Raw, t.ID, id)
	}
	b = append(b, "<tuple"...)
	b = xmltext.AppendAttr(b, "id", id)
	b = append(b, "><status>"...)
	if t.Basic != "" {
		b = append(b, "<basic>"...)
		b = xmltext.AppendEscaped(b, t.Basic, false)
		b = append(b, "</basic>"...)
	}
	b = append(b, "</status>"...)
	if t.Contact != "" {
		b = append(b, "<contact"...)
		if t.Priority != "" {
			b = xmltext.AppendAttr(b, "priority", t.Priority)
		}
		b = append(b, '>')
		b = xmltext.AppendEscaped(b, t.Contact, false)
		b = append(b, "</contact>"...)
	}
	b = appendNotes(b, "note", t.Notes)
	if !t.Timestamp.IsZero() {
		b = appendTime(b, "timestamp", t.Timestamp)
	}
	return append(b, "</tuple>"...)
}

func appendPerson(b []byte, p *Person, id string) []byte {
	if p.Raw != nil {
		return appendRaw(b, p.Raw, p.ID, id)
	}
	b = append(b, "<dm:person"...)
	b = xmltext.AppendAttr(b, "id", id)
	b = append(b, '>')
	if len(p.Activities) > 0 {
		b = append(b, "<rpid:activities>"...)
		for _, a := range p.Activities {
			if isKnownActivity(a) {
				b = append(b, "<rpid:"...)
				b = append(b, a...)
				b = append(b, "/>"...)
			} else {
				b = append(b, "<rpid:other>"...)
				b = xmltext.AppendEscaped(b, a, false)
				b = append(b, "</rpid:other>"...)
			}
		}
		b = append(b, "</rpid:activities>"...)
	}
	b = appendNotes(b, "dm:note", p.Notes)
	if !p.Timestamp.IsZero() {
		b = appendTime(b, "dm:timestamp", p.Timestamp)
	}
	return append(b, "</dm:person>"...)
}

func appendNotes(b []byte, name string, notes []Note) []byte {
	for _, n := range notes {
		b = append(b, '<')
		b = append(b, name...)
		if n.Lang != "" {
			b = xmltext.AppendAttr(b, "xml:lang", n.Lang)
		}
		b = append(b, '>')
		b = xmltext.AppendEscaped(b, n.Text, false)
		b = append(b, "</"...)
		b = append(b, name...)
		b = append(b, '>')
	}
	return b
}

func appendTime(b []byte, name string, t time.Time) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	b = t.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

// appendRaw appends a raw element, rewriting its id attribute when Compose
// had to change the id to keep it unique, or adding one that was missing.
func appendRaw(b, raw []byte, oldID, newID string) []byte {
	if oldID == newID {
		return append(b, raw...)
	}
	d := xml.NewDecoder(bytes.NewReader(raw))
	tok, err := d.RawToken()
	start, ok := tok.(xml.StartElement)
	if err != nil || !ok {
		// Not an element: nothing sensible to rename, keep it as it is.
		return append(b, raw...)
	}
	off := int(d.InputOffset())
	b = append(b, '<')
	b = append(b, qname(start.Name)...)
	found := false
	for _, a := range start.Attr {
		v := a.Value
		if a.Name.Space == "" && a.Name.Local == "id" {
			v, found = newID, true
		}
		b = xmltext.AppendAttr(b, qname(a.Name), v)
	}
	if !found {
		b = xmltext.AppendAttr(b, "id", newID)
	}
	if off >= 2 && raw[off-2] == '/' {
		b = append(b, "/>"...)
	} else {
		b = append(b, '>')
	}
	return append(b, raw[off:]...)
}

// idSet hands out ids unique within one composed document. Documents hold
// few ids, so a slice scanned linearly (on the caller's stack) beats a map
// until they are many.
type idSet struct {
	list []string
	set  map[string]bool
}

func (s idSet) has(id string) bool {
	if s.set != nil {
		return s.set[id]
	}
	for _, x := range s.list {
		if x == id {
			return true
		}
	}
	return false
}

func (s idSet) add(id string) idSet {
	if s.set != nil {
		s.set[id] = true
		return s
	}
	s.list = append(s.list, id)
	if len(s.list) > 32 {
		s.set = make(map[string]bool, 2*len(s.list))
		for _, x := range s.list {
			s.set[x] = true
		}
	}
	return s
}

// unique returns id, or when it is taken or empty, a variant that is not,
// and the set with it added.
func (s idSet) unique(id, prefix string) (string, idSet) {
	if id != "" && !s.has(id) {
		return id, s.add(id)
	}
	base := id
	if base == "" {
		base = prefix
	}
	for n := 2; ; n++ {
		c := base + "-" + strconv.Itoa(n)
		if id == "" {
			c = base + strconv.Itoa(n-1)
		}
		if !s.has(c) {
			return c, s.add(c)
		}
	}
}
