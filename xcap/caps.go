package xcap

import (
	"github.com/hlas-voip/hlas/internal/xmltext"
)

// capsDocumentFor writes the xcap-caps document (RFC 4825 §12) of a
// server with the AUIDs given: every AUID, xcap-caps first, and every
// namespace their documents use.
func capsDocumentFor(auids []AUID) []byte {
	b := []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<xcap-caps xmlns="` + capsNamespace + `">` + "\n  <auids>\n    <auid>" + capsAUID + "</auid>\n")
	for _, a := range auids {
		b = append(b, "    <auid>"...)
		b = xmltext.AppendEscaped(b, a.Name, false)
		b = append(b, "</auid>\n"...)
	}
	b = append(b, "  </auids>\n  <namespaces>\n"...)
	seen := map[string]bool{}
	for _, ns := range append([]string{capsNamespace, ErrorNamespace}, namespacesOf(auids)...) {
		if ns == "" || seen[ns] {
			continue
		}
		seen[ns] = true
		b = append(b, "    <namespace>"...)
		b = xmltext.AppendEscaped(b, ns, false)
		b = append(b, "</namespace>\n"...)
	}
	return append(b, "  </namespaces>\n</xcap-caps>\n"...)
}

func namespacesOf(auids []AUID) []string {
	out := make([]string, len(auids))
	for i, a := range auids {
		out[i] = a.Namespace
	}
	return out
}
