// Package dialoginfo writes and reads dialog-info documents, the bodies of
// the dialog event package (RFC 4235) that desk phones show as busy lamps.
package dialoginfo

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// NS is the dialog-info namespace and ContentType its media type
// (RFC 4235 §4.1, §7).
const (
	NS          = "urn:ietf:params:xml:ns:dialog-info"
	ContentType = "application/dialog-info+xml"
)

// Info is a whole dialog-info document.
type Info struct {
	// Entity is the URI of the user whose dialogs these are.
	Entity string
	// Version counts the documents sent on one subscription (RFC 4235 §4.1.1).
	Version uint32
	// Full is true for state="full", false for state="partial".
	Full    bool
	Dialogs []Dialog
}

// Dialog is one <dialog> element (RFC 4235 §4.1.2).
type Dialog struct {
	// ID identifies the dialog within the document; required.
	ID string
	// CallID, LocalTag and RemoteTag identify the SIP dialog, when known.
	CallID    string
	LocalTag  string
	RemoteTag string
	// Direction is "initiator" or "recipient", empty when unknown.
	Direction string
	// State is "trying", "proceeding", "early", "confirmed" or "terminated".
	State string
	// Event says why a dialog terminated (or was replaced): "cancelled",
	// "rejected", "replaced", "local-bye", "remote-bye", "error" or
	// "timeout"; Code is the response code that caused it, 0 if none.
	Event string
	Code  int
	// Duration is how long the dialog has existed, written in whole
	// seconds; zero leaves it out.
	Duration time.Duration
	Local    Participant
	Remote   Participant
}

// Participant is the <local> or <remote> element of a dialog.
type Participant struct {
	// Identity is the participant's URI (from From/To or an asserted
	// identity) and Display its display name.
	Identity string
	Display  string
	// Target is the participant's contact URI.
	Target string
}

// Build writes a dialog-info document. The caller keeps the version
// counter of each subscription (RFC 4235 §4.1: it starts at 0 and grows by
// one per NOTIFY) and decides between full and partial state. The values
// are written as given; all text is escaped.
func Build(entity string, version uint32, full bool, dialogs []Dialog) []byte {
	size := 160 + len(entity)
	for i := range dialogs {
		d := &dialogs[i]
		size += 200 + len(d.ID) + len(d.CallID) + len(d.LocalTag) + len(d.RemoteTag) +
			len(d.Local.Identity) + len(d.Local.Display) + len(d.Local.Target) +
			len(d.Remote.Identity) + len(d.Remote.Display) + len(d.Remote.Target)
	}
	b := make([]byte, 0, size+size/8)
	b = append(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dialog-info xmlns=\""+NS+"\""...)
	b = xmltext.AppendVersionState(b, version, full)
	b = xmltext.AppendAttr(b, "entity", entity)
	b = append(b, ">\n"...)
	for i := range dialogs {
		b = appendDialog(b, &dialogs[i])
	}
	return append(b, "</dialog-info>\n"...)
}

func appendDialog(b []byte, d *Dialog) []byte {
	b = append(b, "<dialog"...)
	b = xmltext.AppendAttr(b, "id", d.ID)
	if d.CallID != "" {
		b = xmltext.AppendAttr(b, "call-id", d.CallID)
	}
	if d.LocalTag != "" {
		b = xmltext.AppendAttr(b, "local-tag", d.LocalTag)
	}
	if d.RemoteTag != "" {
		b = xmltext.AppendAttr(b, "remote-tag", d.RemoteTag)
	}
	if d.Direction != "" {
		b = xmltext.AppendAttr(b, "direction", d.Direction)
	}
	b = append(b, "><state"...)
	if d.Event != "" {
		b = xmltext.AppendAttr(b, "event", d.Event)
	}
	if d.Code != 0 {
		b = append(b, " code=\""...)
		b = strconv.AppendInt(b, int64(d.Code), 10)
		b = append(b, '"')
	}
	b = append(b, '>')
	b = xmltext.AppendEscaped(b, d.State, false)
	b = append(b, "</state>"...)
	if s := int64(d.Duration / time.Second); s > 0 {
		b = append(b, "<duration>"...)
		b = strconv.AppendInt(b, s, 10)
		b = append(b, "</duration>"...)
	}
	b = appendParticipant(b, "local", &d.Local)
	b = appendParticipant(b, "remote", &d.Remote)
	return append(b, "</dialog>\n"...)
}

func appendParticipant(b []byte, name string, p *Participant) []byte {
	if p.Identity == "" && p.Target == "" {
		return b
	}
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, '>')
	if p.Identity != "" {
		b = append(b, "<identity"...)
		if p.Display != "" {
			b = xmltext.AppendAttr(b, "display", p.Display)
		}
		b = append(b, '>')
		b = xmltext.AppendEscaped(b, p.Identity, false)
		b = append(b, "</identity>"...)
	}
	if p.Target != "" {
		b = append(b, "<target"...)
		b = xmltext.AppendAttr(b, "uri", p.Target)
		b = append(b, "/>"...)
	}
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

type xmlInfo struct {
	Version *string     `xml:"version,attr"`
	State   string      `xml:"state,attr"`
	Entity  string      `xml:"entity,attr"`
	Dialogs []xmlDialog `xml:"urn:ietf:params:xml:ns:dialog-info dialog"`
}

type xmlDialog struct {
	ID        string          `xml:"id,attr"`
	CallID    string          `xml:"call-id,attr"`
	LocalTag  string          `xml:"local-tag,attr"`
	RemoteTag string          `xml:"remote-tag,attr"`
	Direction string          `xml:"direction,attr"`
	State     []xmlState      `xml:"urn:ietf:params:xml:ns:dialog-info state"`
	Duration  *string         `xml:"urn:ietf:params:xml:ns:dialog-info duration"`
	Local     *xmlParticipant `xml:"urn:ietf:params:xml:ns:dialog-info local"`
	Remote    *xmlParticipant `xml:"urn:ietf:params:xml:ns:dialog-info remote"`
}

type xmlState struct {
	Event string `xml:"event,attr"`
	Code  string `xml:"code,attr"`
	Value string `xml:",chardata"`
}

type xmlParticipant struct {
	Identity *struct {
		Display string `xml:"display,attr"`
		URI     string `xml:",chardata"`
	} `xml:"urn:ietf:params:xml:ns:dialog-info identity"`
	Target *struct {
		URI string `xml:"uri,attr"`
	} `xml:"urn:ietf:params:xml:ns:dialog-info target"`
}

// Parse reads and validates a dialog-info document, such as a phone's
// PUBLISH: at most MaxSize bytes and MaxDepth levels, no DTD, root
// <dialog-info> in NS with a version, state full or partial and an entity,
// every dialog with an id and one state from RFC 4235 §4.1.2. Elements of
// other namespaces are ignored. The error says what is wrong, fit for the
// Warning of a 400.
func Parse(b []byte) (*Info, error) {
	var x xmlInfo
	if err := rules().Decode(b, NS, "dialog-info", &x); err != nil {
		return nil, err
	}
	info := &Info{Entity: strings.TrimSpace(x.Entity)}
	var err error
	if info.Version, info.Full, err = rules().Versioned("dialog-info", x.Version, x.State); err != nil {
		return nil, err
	}
	if info.Entity == "" {
		return nil, errors.New("dialoginfo: <dialog-info> has no entity attribute")
	}
	info.Dialogs = make([]Dialog, 0, len(x.Dialogs))
	for i := range x.Dialogs {
		d, err := convertDialog(&x.Dialogs[i])
		if err != nil {
			return nil, err
		}
		info.Dialogs = append(info.Dialogs, d)
	}
	return info, nil
}

func convertDialog(x *xmlDialog) (Dialog, error) {
	d := Dialog{ID: x.ID, CallID: x.CallID, LocalTag: x.LocalTag, RemoteTag: x.RemoteTag, Direction: x.Direction}
	if d.ID == "" {
		return d, errors.New("dialoginfo: <dialog> without id attribute")
	}
	if d.Direction != "" && !slices.Contains([]string{"initiator", "recipient"}, d.Direction) {
		return d, fmt.Errorf("dialoginfo: dialog %q: direction %q, want initiator or recipient", xmltext.Clip(d.ID), xmltext.Clip(d.Direction))
	}
	if len(x.State) != 1 {
		return d, fmt.Errorf("dialoginfo: dialog %q has %d <state> elements, want 1", xmltext.Clip(d.ID), len(x.State))
	}
	st := x.State[0]
	d.State = strings.TrimSpace(st.Value)
	if !slices.Contains([]string{"trying", "proceeding", "early", "confirmed", "terminated"}, d.State) {
		return d, fmt.Errorf("dialoginfo: dialog %q: state %q, want trying, proceeding, early, confirmed or terminated", xmltext.Clip(d.ID), xmltext.Clip(d.State))
	}
	d.Event = st.Event
	if d.Event != "" && !slices.Contains([]string{"cancelled", "rejected", "replaced", "local-bye", "remote-bye", "error", "timeout"}, d.Event) {
		return d, fmt.Errorf("dialoginfo: dialog %q: state event %q is not one of RFC 4235", xmltext.Clip(d.ID), xmltext.Clip(d.Event))
	}
	if st.Code != "" {
		c, err := strconv.Atoi(strings.TrimSpace(st.Code))
		if err != nil || c < 100 || c > 699 {
			return d, fmt.Errorf("dialoginfo: dialog %q: state code %q is not a response code", xmltext.Clip(d.ID), xmltext.Clip(st.Code))
		}
		d.Code = c
	}
	if x.Duration != nil {
		s, err := strconv.ParseUint(strings.TrimSpace(*x.Duration), 10, 31)
		if err != nil {
			return d, fmt.Errorf("dialoginfo: dialog %q: duration %q is not a number of seconds", xmltext.Clip(d.ID), xmltext.Clip(*x.Duration))
		}
		d.Duration = time.Duration(s) * time.Second
	}
	d.Local = convertParticipant(x.Local)
	d.Remote = convertParticipant(x.Remote)
	return d, nil
}

func convertParticipant(x *xmlParticipant) Participant {
	var p Participant
	if x == nil {
		return p
	}
	if x.Identity != nil {
		p.Identity = strings.TrimSpace(x.Identity.URI)
		if p.Identity != "" { // a display name names an identity; alone it says nothing
			p.Display = x.Identity.Display
		}
	}
	if x.Target != nil {
		p.Target = strings.TrimSpace(x.Target.URI)
	}
	return p
}
