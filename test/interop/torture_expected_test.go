//go:build interop

package interop

// The expected final status code for every torture message, keyed by file
// name without ".sip"; 0 means no response at all (the message is dropped).
//
// Section numbers are those of RFC 4475 ("4475 §3.1.1.1") and RFC 5118
// ("5118 §4.1"), whose text says how an element should treat each message.
// None of the messages is addressed to hlas itself: a well-formed request
// for a foreign domain gets 404 while hlas neither proxies nor serves other
// domains (RFC 3261 §10.3 step 1 for REGISTER), which replaces the 415, 401,
// 406 a UAS would send. Responses are never answered (RFC 3261 §18.1.2:
// a response with no matching transaction is dropped).
//
// When one message breaks several rules the table assumes the order of
// RFC 3261 §8.2 and §16.3: the message must parse (400) and carry SIP/2.0
// (505) before the Request-URI scheme (416), Max-Forwards (483), Require or
// Proxy-Require (420) and the method (501) are looked at.
var expected = map[string]int{
	// 4475 §3.1.1 Valid messages: "parsers must accept".
	"wsinv":      404, // §3.1.1.1 short tortuous INVITE: LWS and folding everywhere
	"intmeth":    404, // §3.1.1.2 wide range of valid characters; unknown method for a foreign domain: a proxy forwards it (RFC 3261 §16), 501 is for a UAS
	"esc01":      404, // §3.1.1.3 escaped characters in URIs; "sips%3A" is a user part, not a scheme
	"escnull":    404, // §3.1.1.4 escaped NULs in URIs; REGISTER for example.com
	"esc02":      404, // §3.1.1.5 RE%47IST%45R is an unknown method, not REGISTER; forwarded like intmeth
	"lwsdisp":    404, // §3.1.1.6 no LWS between display name and "<"
	"longreq":    404, // §3.1.1.7 long values, 3 kB, many Vias in every case spelling
	"dblreq":     404, // §3.1.1.8 REGISTER then stray bytes; over UDP the extra INVITE is ignored
	"semiuri":    404, // §3.1.1.9 ";" in the user part of the Request-URI
	"transports": 404, // §3.1.1.10 Vias with UDP, SCTP, TLS, UNKNOWN, TCP transports
	"mpart01":    404, // §3.1.1.11 multipart/mixed MESSAGE with binary body; preloaded Route elsewhere
	"unreason":   0,   // §3.1.1.12 response (UTF-8 reason phrase): dropped
	"noreason":   0,   // §3.1.1.13 response (empty reason phrase): dropped

	// 4475 §3.1.2 Invalid messages.
	"badinv01":   400, // §3.1.2.1 extraneous ";" and "," in Via and Contact
	"clerr":      400, // §3.1.2.2 Content-Length 9999 beyond the datagram (TCP: see expectedTCP)
	"ncl":        400, // §3.1.2.3 negative Content-Length
	"scalar02":   400, // §3.1.2.4 CSeq beyond 2**32-1, Max-Forwards 300, huge Expires
	"scalarlg":   0,   // §3.1.2.5 response with huge scalars: dropped
	"quotbal":    400, // §3.1.2.6 unterminated quoted string in the display name
	"ltgtruri":   400, // §3.1.2.7 Request-URI enclosed in "<>"
	"lwsruri":    400, // §3.1.2.8 LWS inside the Request-URI
	"lwsstart":   404, // §3.1.2.9 several SP in the request line: rejecting (400) and ignoring them are both allowed; hlas ignores
	"trws":       404, // §3.1.2.10 SP after the SIP-Version: rejecting (400) and ignoring it are both allowed; hlas ignores
	"escruri":    400, // §3.1.2.11 escaped headers in the Request-URI (ignoring them is also allowed)
	"baddate":    404, // §3.1.2.12 non-GMT Date: reject only if the Date matters; here it does not
	"regbadct":   400, // §3.1.2.13 Contact URI with "?" not enclosed in "<>"
	"badaspec":   400, // §3.1.2.14 spaces inside the addr-spec of To
	"baddn":      400, // §3.1.2.15 unquoted display name with ","; file lacks the final blank line (TCP: see expectedTCP)
	"baddn-crlf": 400, // §3.1.2.15 the same with the blank line added
	"badvers":    505, // §3.1.2.16 SIP/7.0: Version Not Supported
	"mismatch01": 400, // §3.1.2.17 CSeq method INVITE on an OPTIONS
	"mismatch02": 501, // §3.1.2.18 unknown method and CSeq mismatch: 501 preferred, 400 allowed
	"bigcode":    0,   // §3.1.2.19 response with code 4294967301: dropped

	// 4475 §3.2 Transaction layer semantics.
	"badbranch": 404, // §3.2.1 branch is just the magic cookie: fall back to RFC 2543 matching (400 also allowed)

	// 4475 §3.3 Application layer semantics.
	"insuf":    400, // §3.3.1 no Call-ID, From, To
	"unkscm":   416, // §3.3.2 unknown Request-URI scheme
	"novelsc":  416, // §3.3.3 known but unsupported Request-URI scheme (soap.beep)
	"unksm2":   404, // §3.3.4 isbn: To in a REGISTER for example.com: proxies treat it like any request; the registrar of the domain would say 400
	"bext01":   420, // §3.3.5 Require and Proxy-Require with unknown options
	"invut":    404, // §3.3.6 unknown Content-Type: a UAS says 415, not for us to judge here
	"regaut01": 404, // §3.3.7 unknown Authorization scheme; REGISTER for example.com
	"multi01":  400, // §3.3.8 several Call-ID, CSeq, To, From, Max-Forwards
	"mcl01":    400, // §3.3.9 two Content-Length values
	"bcast":    0,   // §3.3.10 response with a broadcast Via: dropped
	"zeromf":   483, // §3.3.11 Max-Forwards 0 on a request not for us: Too Many Hops
	"cparam01": 404, // §3.3.12 Contact parameter without "<>"; REGISTER for example.com
	"cparam02": 404, // §3.3.13 Contact with "<>" and a parameter; shares cparam01's transaction key
	"regescrt": 404, // §3.3.14 escaped Route in a registered Contact
	"sdp01":    404, // §3.3.15 Accept without SDP: a UAS says 406

	// 4475 §3.4 Backward compatibility.
	"inv2543": 404, // §3.4.1 RFC 2543 INVITE: no branch, no Max-Forwards, no Content-Length

	// The archive's test.dat, not in the RFC text: no SIP-Version in the
	// request line, a header line without a colon, and no Via, so a response
	// would have nowhere to go (RFC 3261 §18.2.2): dropped.
	"rfc4475-test": 0,

	// RFC 5118 IPv6 torture messages.
	"ipv6-good":                     404, // §4.1 IPv6 reference in the Request-URI
	"ipv6-bad":                      400, // §4.2 IPv6 address without brackets
	"port-ambiguous":                404, // §4.3 [2001:db8::10:5070] is an address without a port
	"port-unambiguous":              404, // §4.4 [2001:db8::10]:5070
	"via-received-param-with-delim": 404, // §4.5 received=[2001:db8::9:255]; BYE elsewhere
	"via-received-param-no-delim":   404, // §4.5 received=2001:db8::9:255
	"ipv6-in-sdp":                   404, // §4.6 IPv6 in SDP only
	"mult-ip-in-header":             404, // §4.7 IPv4 and IPv6 Vias; BYE elsewhere
	"mult-ip-in-sdp":                404, // §4.8 IPv4 and IPv6 in SDP
	"ipv4-mapped-ipv6":              404, // §4.9 ::ffff:192.0.2.10 in Via and SDP
	"ipv6-bug-abnf-3-colons":        404, // §4.10 "2001:db8:::192.0.2.1" from RFC 3261's ABNF bug: accept leniently (400 is arguable after RFC 5954)
	"ipv6-correct-abnf-2-colons":    404, // §4.10 the correct form
}

// expectedTCP overrides expected for a message sent over a TCP connection,
// where the Content-Length frames the message (RFC 3261 §18.3) and a short
// message leaves the server waiting for the rest.
var expectedTCP = map[string]int{
	"clerr":   0,   // Content-Length 9999: the server waits for the body; the test gives up
	"baddn":   0,   // no blank line ends the header section: the server waits for it
	"inv2543": 400, // no Content-Length on a stream transport (RFC 3261 §18.3, §20.14): cannot frame
}
