// Package transport carries SIP messages over UDP, TCP and TLS, on IPv4
// and IPv6 (RFC 3261 §18). It frames inbound messages and hands their raw
// bytes to a Handler; it does not parse SIP beyond finding the end of a
// message on a stream, and it does not import package sip.
//
// # Admission
//
// Config.Admit, when set, is asked about every source before its input
// costs anything: each UDP datagram as soon as it is read (before it is
// copied and before the STUN and keep-alive checks), each accepted stream
// connection before it is registered or its TLS handshake begins, and each
// frame read on a stream connection before it reaches the Handler. What
// it refuses is dropped without an answer (an answer to a flood would
// amplify it); a refused connection, or one a refused frame arrived on,
// is closed. This is where a flood guard's bans take effect.
//
// # Reading UDP
//
// A UDP socket asks for a Config.ReadBuffer receive buffer (4 MiB), so a
// burst waits in the kernel rather than being dropped there before Admit
// has seen it. On Linux SO_RCVBUFFORCE is tried first, which exceeds
// net.core.rmem_max when the process has CAP_NET_ADMIN; otherwise the
// kernel caps SO_RCVBUF at rmem_max. What was obtained is logged at Debug.
// On Linux one recvmmsg(2) reads up to Config.ReadBatch datagrams (32),
// through the socket's RawConn so Go's poller still does the waiting;
// elsewhere, or with ReadBatch 1, datagrams are read one at a time. Each
// socket has one reader goroutine. A datagram the Handler gets costs one
// allocation, its Packet and Data together (up to 8 KiB); one refused
// costs none.
//
// # Framing
//
// A UDP datagram is one message, handed on as read (up to 65535 bytes);
// the receiver checks its Content-Length. A datagram of nothing but CR and
// LF bytes is a keep-alive: it is counted and dropped. Empty datagrams are
// dropped. When Config.STUN is set, a datagram framed as STUN (first byte
// 0 to 3, the magic cookie, a matching length: RFC 7983 §7) goes to it
// instead of the Handler, and its answer leaves from the same socket; SIP
// never starts with such a byte, so the check costs SIP one comparison.
//
// On a stream (RFC 3261 §18.3) the header section ends at the first empty
// line (CRLF CRLF, or LF LF to be liberal) and the body is Content-Length
// bytes long. Content-Length is found by header name, full or compact (l),
// in any case, with optional whitespace before the colon and a value that
// may be folded onto continuation lines. A missing Content-Length counts
// as 0 unless a Content-Type announces a body. Several Content-Length
// headers must agree. Pipelined messages are delivered one by one, in order.
//
// A message larger than Config.MaxMessageSize is delivered once with
// Packet.Oversize set and only its header section in Data (or its first
// MaxMessageSize+1 bytes when no header end was found); one with an unusable
// Content-Length (negative, not a number, conflicting, or missing with a
// Content-Type) is delivered once with Packet.BadFraming saying why. In
// both cases the connection leaves the connection table, nothing more is
// read from it, and it is closed after the first write on it (the 513 or
// 400 the server sends on Packet.Conn) or after WriteTimeout.
//
// Between messages on a stream, CRLF CRLF is an RFC 5626 §3.5.1 keep-alive
// ping answered with CRLF; a lone CRLF (or LF) is skipped.
//
// # Connections
//
// Stream connections, accepted and dialed alike, are kept in a table keyed
// by protocol and remote address, so that a response or a later request to
// a peer reuses the connection it opened (RFC 3261 §18.2.2). Alias adds
// further keys, for instance a Via sent-by (RFC 5923). Entries go when the
// connection closes. A connection closes after Config.IdleTimeout without
// input, when a message takes longer than Config.MessageTimeout from its
// first byte to its last (a slowloris peer), on any write error, and on a write that takes longer than
// Config.WriteTimeout. Accepted sockets beyond Config.MaxConns in total or
// Config.MaxConnsPerSource from one IP address are closed at once. An idle
// connection holds one goroutine (its reader) and a 1 KiB read buffer:
// larger buffers come from the Manager's pool while a message arrives, and
// the writer goroutine runs only while something is queued.
//
// # Mutual TLS
//
// A TLS listener verifies client certificates as Config.TLSConfig says
// (ClientAuth, ClientCAs): with VerifyClientCertIfGiven a client without a
// certificate is served, and one whose certificate does not chain to
// ClientCAs fails the handshake. Conn.PeerNames gives the DNS names and
// common name of the peer's verified certificate, the client's on an
// accepted connection and the server's on a dialed one, so that a peer
// can be trusted by its certificate rather than its address. They are
// computed once, after the handshake.
//
// # Metrics
//
// Manager is a prometheus.Collector. Every metric is in namespace hlas,
// subsystem transport, with a proto label (UDP, TCP, TLS):
//
//	hlas_transport_packets_received_total          messages handed to the Handler
//	hlas_transport_bytes_received_total            bytes read
//	hlas_transport_packets_sent_total              messages sent
//	hlas_transport_bytes_sent_total                bytes written
//	hlas_transport_keepalives_total                CRLF keep-alives received
//	hlas_transport_write_errors_total              failed sends
//	hlas_transport_oversize_total                  stream messages over the size limit (TCP, TLS)
//	hlas_transport_bad_framing_total               stream messages with a bad Content-Length (TCP, TLS)
//	hlas_transport_connections_open                open connections (gauge; TCP, TLS)
//	hlas_transport_connections_accepted_total      inbound connections admitted (TCP, TLS)
//	hlas_transport_connections_dialed_total        outbound connections made (TCP, TLS)
//	hlas_transport_connections_rejected_total      inbound connections refused by a limit (TCP, TLS)
//	hlas_transport_connections_idle_closed_total   connections closed by the idle or the message timeout (TCP, TLS)
//	hlas_transport_dial_errors_total               failed dials (TCP, TLS)
//	hlas_transport_tls_handshake_errors_total      failed inbound TLS handshakes (TCP, TLS)
//	hlas_transport_packets_dropped_total           datagrams and frames refused, by reason (admit)
//	hlas_transport_connections_dropped_total       connections closed by a refusal, by reason (admit; TCP, TLS)
//	hlas_transport_reads_total                     UDP reads (system calls) that returned datagrams (UDP)
//
// # Logging
//
// Logs go to Config.Logger with feature=transport: listeners opening and
// the Manager closing at Info, failing accepts at Warn, and each
// connection's acceptance, rejection, dial and close (with its reason) at
// Debug.
package transport
