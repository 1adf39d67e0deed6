// Package winfo writes and reads watcher information documents (RFC 3858),
// the bodies of the watcherinfo template package (RFC 3857): a user who
// subscribes to her own presence.winfo sees who watches her and whether
// each watcher is allowed.
package winfo

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// NS is the watcherinfo namespace and ContentType its media type
// (RFC 3858 §4, §6).
const (
	NS          = "urn:ietf:params:xml:ns:watcherinfo"
	ContentType = "application/watcherinfo+xml"
)

// Info is a whole watcherinfo document.
type Info struct {
	// Version counts the documents sent on one subscription (RFC 3858 §4).
	Version uint32
	// Full is true for state="full", false for state="partial".
	Full  bool
	Lists []WatcherList
}

// WatcherList holds the watchers of one resource for one event package.
type WatcherList struct {
	// Resource is the watched URI and Package the event package
	// ("presence"); both required.
	Resource string
	Package  string
	Watchers []Watcher
}

// Watcher is one subscription to the resource (RFC 3858 §5).
type Watcher struct {
	// ID is a token naming the subscription, stable across documents.
	ID string
	// URI is the watcher's URI and DisplayName its display name, if any.
	URI         string
	DisplayName string
	// Status is "pending", "active", "waiting" or "terminated".
	Status string
	// Event is what last happened (RFC 3857 §5.3): "subscribe",
	// "approved", "deactivated", "probation", "rejected", "timeout",
	// "giveup" or "noresource".
	Event string
	// DurationSubscribed is the seconds since the subscription began and
	// Expiration the seconds until it ends; zero values are left out.
	DurationSubscribed uint32
	Expiration         uint32
}

// Build writes a watcherinfo document. The caller keeps the version
// counter of each subscription and decides between full and partial state
// (a partial document carries only the watchers that changed). The values
// are written as given; all text is escaped.
func Build(version uint32, full bool, lists []WatcherList) []byte {
	size := 128
	for i := range lists {
		size += 64 + len(lists[i].Resource) + len(lists[i].Package)
		for j := range lists[i].Watchers {
			w := &lists[i].Watchers[j]
			size += 128 + len(w.ID) + len(w.URI) + len(w.DisplayName)
		}
	}
	b := make([]byte, 0, size+size/8)
	b = append(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<watcherinfo xmlns=\""+NS+"\""...)
	b = xmltext.AppendVersionState(b, version, full)
	b = append(b, ">\n"...)
	for i := range lists {
		l := &lists[i]
		b = append(b, "<watcher-list"...)
		b = xmltext.AppendAttr(b, "resource", l.Resource)
		b = xmltext.AppendAttr(b, "package", l.Package)
		b = append(b, ">\n"...)
		for j := range l.Watchers {
			w := &l.Watchers[j]
			b = append(b, "<watcher"...)
			b = xmltext.AppendAttr(b, "id", w.ID)
			b = xmltext.AppendAttr(b, "status", w.Status)
			b = xmltext.AppendAttr(b, "event", w.Event)
			if w.DisplayName != "" {
				b = xmltext.AppendAttr(b, "display-name", w.DisplayName)
			}
			b = xmltext.AppendUintAttr(b, "duration-subscribed", w.DurationSubscribed)
			b = xmltext.AppendUintAttr(b, "expiration", w.Expiration)
			b = append(b, '>')
			b = xmltext.AppendEscaped(b, w.URI, false)
			b = append(b, "</watcher>\n"...)
		}
		b = append(b, "</watcher-list>\n"...)
	}
	return append(b, "</watcherinfo>\n"...)
}

type xmlInfo struct {
	Version *string   `xml:"version,attr"`
	State   string    `xml:"state,attr"`
	Lists   []xmlList `xml:"urn:ietf:params:xml:ns:watcherinfo watcher-list"`
}

type xmlList struct {
	Resource string       `xml:"resource,attr"`
	Package  string       `xml:"package,attr"`
	Watchers []xmlWatcher `xml:"urn:ietf:params:xml:ns:watcherinfo watcher"`
}

type xmlWatcher struct {
	ID                 string `xml:"id,attr"`
	Status             string `xml:"status,attr"`
	Event              string `xml:"event,attr"`
	DisplayName        string `xml:"display-name,attr"`
	DurationSubscribed string `xml:"duration-subscribed,attr"`
	Expiration         string `xml:"expiration,attr"`
	URI                string `xml:",chardata"`
}

// Parse reads and validates a watcherinfo document: at most MaxSize bytes
// and MaxDepth levels, no DTD, root <watcherinfo> in NS with a version and
// state full or partial, every list with resource and package, every
// watcher with id, status, event and URI, values from RFC 3858 §5.
// The error says what is wrong.
func Parse(b []byte) (*Info, error) {
	var x xmlInfo
	if err := rules().Decode(b, NS, "watcherinfo", &x); err != nil {
		return nil, err
	}
	info := &Info{}
	var err error
	if info.Version, info.Full, err = rules().Versioned("watcherinfo", x.Version, x.State); err != nil {
		return nil, err
	}
	info.Lists = make([]WatcherList, 0, len(x.Lists))
	for i := range x.Lists {
		xl := &x.Lists[i]
		l := WatcherList{Resource: strings.TrimSpace(xl.Resource), Package: xl.Package}
		if l.Resource == "" || l.Package == "" {
			return nil, errors.New("winfo: <watcher-list> needs resource and package attributes")
		}
		l.Watchers = make([]Watcher, 0, len(xl.Watchers))
		for j := range xl.Watchers {
			w, err := convertWatcher(&xl.Watchers[j])
			if err != nil {
				return nil, fmt.Errorf("winfo: list %q: %v", xmltext.Clip(l.Resource), err)
			}
			l.Watchers = append(l.Watchers, w)
		}
		info.Lists = append(info.Lists, l)
	}
	return info, nil
}

func convertWatcher(x *xmlWatcher) (Watcher, error) {
	w := Watcher{ID: x.ID, Status: x.Status, Event: x.Event, DisplayName: x.DisplayName, URI: strings.TrimSpace(x.URI)}
	switch {
	case w.ID == "":
		return w, errors.New("<watcher> without id")
	case !slices.Contains([]string{"pending", "active", "waiting", "terminated"}, w.Status):
		return w, fmt.Errorf("watcher %q: status %q, want pending, active, waiting or terminated", xmltext.Clip(w.ID), xmltext.Clip(w.Status))
	case !slices.Contains([]string{"subscribe", "approved", "deactivated", "probation", "rejected", "timeout", "giveup", "noresource"}, w.Event):
		return w, fmt.Errorf("watcher %q: event %q is not one of RFC 3857", xmltext.Clip(w.ID), xmltext.Clip(w.Event))
	case w.URI == "":
		return w, fmt.Errorf("watcher %q has no URI", xmltext.Clip(w.ID))
	}
	for _, f := range []struct {
		name string
		in   string
		out  *uint32
	}{
		{"duration-subscribed", x.DurationSubscribed, &w.DurationSubscribed},
		{"expiration", x.Expiration, &w.Expiration},
	} {
		if f.in == "" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(f.in), 10, 32)
		if err != nil {
			return w, fmt.Errorf("watcher %q: %s %q is not a 32-bit unsigned number", xmltext.Clip(w.ID), f.name, xmltext.Clip(f.in))
		}
		*f.out = uint32(n)
	}
	return w, nil
}
