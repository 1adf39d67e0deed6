// Package stir implements the STIR/SHAKEN authentication (signing) and
// verification services: the SIP Identity header of RFC 8224 carrying a
// PASSporT (RFC 8225) with the SHAKEN extension (RFC 8588), signed with
// ES256 by a key whose certificate names the service provider in a
// TNAuthList extension (RFC 8226).
//
// The package knows no SIP message types. The server extracts the calling
// number (P-Asserted-Identity or From), the called number (To or the
// Request-URI) and the Identity header value, and calls Signer.Sign or
// Verifier.Verify; the Result carries the SIP status code the policy would
// answer with and the ATIS-1000074 verstat value to pass downstream.
//
// Only the full form of the Identity header (header.payload.signature) is
// produced and accepted: a SHAKEN PASSporT carries attest and origid, which
// cannot be rebuilt from the SIP message, so the compact form
// (header..signature) is refused with 438 (ATIS-1000074 requires the full
// form as well).
//
// Certificates named by x5u are fetched over HTTPS with a timeout, at most
// one fetch per URL at a time (concurrent verifications of the same URL
// wait for it), and kept in a bounded LRU cache; failures are cached for a
// short time so an unreachable x5u does not cost one fetch per call.
package stir
