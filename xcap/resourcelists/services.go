package resourcelists

import (
	"fmt"
	"strings"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// ServicesNamespace and ServicesContentType are those of rls-services
// documents (RFC 4826 §4).
const (
	ServicesNamespace   = "urn:ietf:params:xml:ns:rls-services"
	ServicesContentType = "application/rls-services+xml"
)

// Services is a whole rls-services document.
type Services struct {
	Services []Service
}

// Service is one list URI the resource list server answers for.
type Service struct {
	// URI is the SIP URI of the list, which watchers SUBSCRIBE to.
	URI string
	// ResourceList is the XCAP URI of the <list> in a resource-lists
	// document that holds the members, "" when List is inline.
	ResourceList string
	// List is the inline list of members, nil when ResourceList is set.
	List *List
	// Packages are the event packages the service accepts ("presence");
	// none means the document does not restrict them.
	Packages []string
}

type xmlServices struct {
	Services []xmlService `xml:"urn:ietf:params:xml:ns:rls-services service"`
}

type xmlService struct {
	URI           *string       `xml:"uri,attr"`
	ResourceLists []string      `xml:"urn:ietf:params:xml:ns:rls-services resource-list"`
	Lists         []xmlList     `xml:"urn:ietf:params:xml:ns:rls-services list"`
	Packages      []xmlPackages `xml:"urn:ietf:params:xml:ns:rls-services packages"`
}

type xmlPackages struct {
	Packages []string `xml:"urn:ietf:params:xml:ns:rls-services package"`
}

// ParseServices reads an rls-services document with the limits of Parse:
// root <rls-services> in ServicesNamespace, every service with a uri.
// A service holding both a <resource-list> and a <list>, or several of
// either, is read with the first of each; ValidateServices refuses it.
func ParseServices(b []byte) (*Services, error) {
	s, _, err := parseServices(b)
	return s, err
}

// parseServices also returns the decoded elements, which ValidateServices
// needs to count what ParseServices folds.
func parseServices(b []byte) (*Services, *xmlServices, error) {
	var x xmlServices
	if err := rules().Decode(b, ServicesNamespace, "rls-services", &x); err != nil {
		return nil, nil, err
	}
	c := converter{}
	if !c.count(len(x.Services)) {
		return nil, nil, c.err
	}
	s := &Services{Services: make([]Service, 0, len(x.Services))}
	for i := range x.Services {
		xs := &x.Services[i]
		if xs.URI == nil || strings.TrimSpace(*xs.URI) == "" {
			return nil, nil, fmt.Errorf("resourcelists: <service> without uri")
		}
		sv := Service{URI: strings.TrimSpace(*xs.URI)}
		if len(xs.ResourceLists) > 0 {
			sv.ResourceList = strings.TrimSpace(xs.ResourceLists[0])
		}
		if len(xs.Lists) > 0 {
			l := c.list(&xs.Lists[0])
			if c.err != nil {
				return nil, nil, c.err
			}
			sv.List = &l
		}
		for _, p := range xs.Packages {
			if !c.count(len(p.Packages)) {
				return nil, nil, c.err
			}
			for _, name := range p.Packages {
				sv.Packages = append(sv.Packages, strings.TrimSpace(name))
			}
		}
		s.Services = append(s.Services, sv)
	}
	return s, &x, nil
}

// ValidateServices parses an rls-services document and checks what its
// schema cannot say (RFC 4826 §4.4): service URIs are distinct within
// the document (their uniqueness across users is the XCAP server's
// business), each service has exactly one <resource-list>, an absolute
// HTTP URI, or one inline <list>, which meets the constraints of
// Validate, and at most one <packages> of non-empty names. The error
// names the offending service; the XCAP server answers it with 409.
func ValidateServices(b []byte) error {
	s, x, err := parseServices(b)
	if err != nil {
		return err
	}
	uris := make(map[string]struct{}, len(s.Services))
	for i := range s.Services {
		sv, xs := &s.Services[i], &x.Services[i]
		name := xmltext.Clip(sv.URI)
		if _, dup := uris[sv.URI]; dup {
			return fmt.Errorf("resourcelists: service %q appears twice", name)
		}
		uris[sv.URI] = struct{}{}
		switch n := len(xs.ResourceLists) + len(xs.Lists); {
		case n == 0:
			return fmt.Errorf("resourcelists: service %q has neither <resource-list> nor <list>", name)
		case n > 1:
			return fmt.Errorf("resourcelists: service %q: want exactly one <resource-list> or <list>, found %d", name, n)
		}
		if len(xs.Packages) > 1 {
			return fmt.Errorf("resourcelists: service %q has %d <packages> elements", name, len(xs.Packages))
		}
		for _, p := range sv.Packages {
			if p == "" {
				return fmt.Errorf("resourcelists: service %q: empty <package>", name)
			}
		}
		if sv.List == nil {
			if !isHTTPURI(sv.ResourceList) {
				return fmt.Errorf("resourcelists: service %q: resource-list %q is not an absolute HTTP URI", name, xmltext.Clip(sv.ResourceList))
			}
			continue
		}
		if err := validateList(sv.List, sv.List.Name); err != nil {
			return fmt.Errorf("resourcelists: service %q: %w", name, err)
		}
	}
	return nil
}

// NewServices returns an empty rls-services document, which a client
// fills with XCAP element PUTs of AppendService's output. It binds the
// rl prefix to the resource-lists namespace, for the entries of inline
// lists.
func NewServices() []byte {
	return []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rls-services xmlns=\"" + ServicesNamespace +
		"\" xmlns:rl=\"" + Namespace + "\">\n</rls-services>\n")
}

// AppendService appends one <service> element declaring its namespace,
// so that it can be PUT into an rls-services document through XCAP: the
// list URI uri, backed by the list at the XCAP URI resourceList or, when
// that is "", by an empty inline list the client fills later, accepting
// the event packages given (all when none).
func AppendService(dst []byte, uri, resourceList string, packages []string) []byte {
	dst = append(dst, "<service"...)
	dst = xmltext.AppendAttr(dst, "xmlns", ServicesNamespace)
	dst = xmltext.AppendAttr(dst, "uri", uri)
	dst = append(dst, ">\n"...)
	if resourceList != "" {
		dst = append(dst, "<resource-list>"...)
		dst = xmltext.AppendEscaped(dst, resourceList, false)
		dst = append(dst, "</resource-list>\n"...)
	} else {
		dst = append(dst, "<list/>\n"...)
	}
	if len(packages) > 0 {
		dst = append(dst, "<packages>\n"...)
		for _, p := range packages {
			dst = append(dst, "<package>"...)
			dst = xmltext.AppendEscaped(dst, p, false)
			dst = append(dst, "</package>\n"...)
		}
		dst = append(dst, "</packages>\n"...)
	}
	return append(dst, "</service>\n"...)
}
