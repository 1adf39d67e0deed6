package stund

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ErrClosed is returned by Listen after Close.
var ErrClosed = errors.New("stund: server closed")

// maxDatagram is the read buffer of a socket: the largest UDP payload.
const maxDatagram = 65535

// Listen opens a UDP socket on addr (host:port; port 0 picks one) and
// answers the STUN datagrams it receives, one reader goroutine per socket,
// until Close. An IPv4 literal host binds IPv4 only and an IPv6 literal
// IPv6 only, so "0.0.0.0:3478" and "[::]:3478" can both be opened. It
// returns the bound address.
func (s *Server) Listen(addr string) (netip.AddrPort, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("stund: listen udp %s: %w", addr, err)
	}
	network := "udp"
	if ip, err := netip.ParseAddr(host); err == nil {
		network = "udp6"
		if ip.Unmap().Is4() {
			network = "udp4"
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return netip.AddrPort{}, ErrClosed
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("stund: listen udp %s: %w", addr, err)
	}
	conn := pc.(*net.UDPConn)
	bound := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	bound = netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
	s.socks = append(s.socks, conn)
	s.addrs = append(s.addrs, bound)
	s.wg.Add(1)
	go s.serve(conn, bound)
	s.log.Info("listening", "proto", "udp", "addr", bound.String())
	return bound, nil
}

// Addrs returns the addresses of the sockets Listen opened.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// serve reads datagrams until the socket is closed and sends the answers
// from the same socket.
func (s *Server) serve(conn *net.UDPConn, local netip.AddrPort) {
	defer s.wg.Done()
	buf := make([]byte, maxDatagram)
	out := make([]byte, 0, 512)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error (an ICMP error reported on the
			// socket, say): keep reading.
			s.log.Debug("read failed", "addr", local.String(), "err", err)
			continue
		}
		out = s.Answer(out[:0], buf[:n], local, src)
		if len(out) == 0 {
			continue
		}
		if _, err := conn.WriteToUDPAddrPort(out, src); err != nil {
			s.log.Debug("send failed", "addr", local.String(), "to", src.String(), "err", err)
		}
	}
}

// Close closes the sockets Listen opened and waits for their readers to
// return. Answer keeps working; Listen fails after it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	socks := s.socks
	s.mu.Unlock()
	var errs []error
	for _, c := range socks {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}
