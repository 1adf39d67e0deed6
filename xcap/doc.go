// Package xcap is the XCAP server of hlas (RFC 4825): the HTTP interface
// through which softphones keep their buddy lists (resource-lists,
// RFC 4826), list services (rls-services) and presence authorisation rules
// (pres-rules, RFC 5025) on the server, as whole documents or one element
// or attribute at a time.
//
// A Server serves the URIs
//
//	{root}/{auid}/users/{xui}/{document}[/~~/{node selector}][?xmlns(p=ns)...]
//	{root}/xcap-caps/global/index
//
// for the application usages (AUID) it is given, with HTTP Digest
// authentication (RFC 7616) against the SIP subscribers: each user reaches
// only the documents under their own XUI. Documents live in a Store whose
// writes are compare-and-set on the entity tag, so two clients editing one
// list never lose each other's change, on one node or several.
//
// Select and Apply are the node selector engine on its own (RFC 4825
// §6.3, §8.2, §8.3), for the command line to edit documents the way a
// client would.
package xcap
