// Package resolvetest runs an authoritative DNS server in-process on
// loopback, UDP and TCP on one port, serving zones written in master-file
// format (RFC 1035 §5), for tests of package resolve and of the packages
// that route with it (a proxy forwarding to a domain whose first SRV
// target is down, an ENUM routing rule).
//
//	srv := resolvetest.Start(t, `
//	$ORIGIN example.test.
//	@              3600 IN SOA ns hostmaster 1 3600 600 86400 300
//	_sip._udp      3600 IN SRV 0 5 5060 sip1
//	sip1           3600 IN A   127.0.0.1
//	`)
//	r, _ := resolve.New(resolve.Config{Servers: []string{srv.Addr}})
package resolvetest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server answers queries from the records it was given: the records of the
// asked name and type, following CNAMEs; NODATA for a name with other
// records only and NXDOMAIN for an unknown name, each with the SOA of the
// closest enclosing zone in the authority section (RFC 2308 §2). It is
// safe for concurrent use.
type Server struct {
	// Addr is the address of the server, "127.0.0.1:port", the same for
	// UDP and TCP.
	Addr string

	udp, tcp *dns.Server

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by owner name, lower case
	soas     []*dns.SOA
	truncate map[string]bool
	drop     map[string]bool
	rcode    map[string]int
	queries  map[query]int
}

type query struct {
	name  string
	qtype uint16
	tcp   bool
}

// Start starts a server for zone on 127.0.0.1 and stops it when the test
// ends. Records without a TTL get 3600.
func Start(tb testing.TB, zone string) *Server {
	tb.Helper()
	s, err := NewServer(zone)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// NewServer starts a server for zone on 127.0.0.1; Close stops it.
// Records without a TTL get 3600.
func NewServer(zone string) (*Server, error) {
	s := &Server{
		rrs:      make(map[string][]dns.RR),
		truncate: make(map[string]bool),
		drop:     make(map[string]bool),
		rcode:    make(map[string]int),
		queries:  make(map[query]int),
	}
	if err := s.Add(zone); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("resolvetest: %w", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		return nil, errors.New("resolvetest: no port free for both UDP and TCP")
	}
	s.Addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			s.Close()
			return nil, errors.New("resolvetest: server did not start")
		}
	}
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// Add adds the records of zone, in master-file format.
func (s *Server) Add(zone string) error {
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "")
	zp.SetDefaultTTL(3600)
	s.mu.Lock()
	defer s.mu.Unlock()
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		s.rrs[name] = append(s.rrs[name], rr)
		if soa, ok := rr.(*dns.SOA); ok {
			s.soas = append(s.soas, soa)
		}
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("resolvetest: %w", err)
	}
	return nil
}

// Truncate makes UDP answers for name come back empty with the TC bit set,
// so that a client must ask again over TCP (RFC 1035 §4.2.1).
func (s *Server) Truncate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[strings.ToLower(dns.Fqdn(name))] = true
}

// Drop makes the server never answer queries for name, as if lost.
func (s *Server) Drop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[strings.ToLower(dns.Fqdn(name))] = true
}

// Rcode makes the server answer queries for name with rcode, such as
// dns.RcodeServerFailure.
func (s *Server) Rcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcode[strings.ToLower(dns.Fqdn(name))] = rcode
}

// Queries returns how many queries for name and qtype the server received,
// over UDP and TCP.
func (s *Server) Queries(name string, qtype uint16) int {
	return s.count(name, qtype, false) + s.count(name, qtype, true)
}

// TCPQueries returns how many queries for name and qtype came over TCP.
func (s *Server) TCPQueries(name string, qtype uint16) int {
	return s.count(name, qtype, true)
}

func (s *Server) count(name string, qtype uint16, tcp bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[query{strings.ToLower(dns.Fqdn(name)), qtype, tcp}]
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	_, tcp := w.LocalAddr().(*net.TCPAddr)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries[query{name, q.Qtype, tcp}]++
	if s.drop[name] {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if rc, ok := s.rcode[name]; ok {
		m.Rcode = rc
		_ = w.WriteMsg(m)
		return
	}
	if !tcp && s.truncate[name] {
		m.Truncated = true
		_ = w.WriteMsg(m)
		return
	}
	for range 8 {
		var cname dns.RR
		for _, rr := range s.rrs[name] {
			switch rr.Header().Rrtype {
			case q.Qtype:
				m.Answer = append(m.Answer, dns.Copy(rr))
			case dns.TypeCNAME:
				cname = rr
			}
		}
		if len(m.Answer) > 0 && m.Answer[len(m.Answer)-1].Header().Rrtype == q.Qtype || cname == nil {
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = strings.ToLower(cname.(*dns.CNAME).Target)
	}
	if len(m.Answer) == 0 || m.Answer[len(m.Answer)-1].Header().Rrtype != q.Qtype {
		if len(s.rrs[name]) == 0 {
			m.Rcode = dns.RcodeNameError
		}
		if soa := s.zoneOf(name); soa != nil {
			m.Ns = append(m.Ns, dns.Copy(soa))
		}
	}
	_ = w.WriteMsg(m)
}

// zoneOf returns the SOA of the closest zone enclosing name.
func (s *Server) zoneOf(name string) *dns.SOA {
	var best *dns.SOA
	for _, soa := range s.soas {
		z := strings.ToLower(soa.Hdr.Name)
		if dns.IsSubDomain(z, name) && (best == nil || len(z) > len(best.Hdr.Name)) {
			best = soa
		}
	}
	return best
}
