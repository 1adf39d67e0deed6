//go:build !linux

package transport

import (
	"net"
	"net/netip"
)

// sizeReadBuffer asks for Config.ReadBuffer on l's socket; the system may
// grant less, which is not reported here.
func (m *Manager) sizeReadBuffer(l *udpListener) {
	if err := l.pc.SetReadBuffer(m.cfg.ReadBuffer); err != nil {
		m.log.Debug("udp receive buffer not set", "addr", l.addr.String(), "requested", m.cfg.ReadBuffer, "err", err)
		return
	}
	m.log.Debug("udp receive buffer", "addr", l.addr.String(), "requested", m.cfg.ReadBuffer)
}

// datagramReader reads a UDP socket one datagram at a time: batched reads
// (Config.ReadBatch) are Linux only.
type datagramReader struct {
	pc  *net.UDPConn
	buf []byte
	n   int
	src netip.AddrPort
}

func newDatagramReader(pc *net.UDPConn, _ int) *datagramReader {
	return &datagramReader{pc: pc, buf: make([]byte, maxDatagram)}
}

// read waits for a datagram; datagram(0) gives it. An error may come
// with none.
func (r *datagramReader) read() (int, error) {
	n, src, err := r.pc.ReadFromUDPAddrPort(r.buf)
	r.n, r.src = n, src
	if err != nil && n == 0 && !src.IsValid() {
		return 0, err
	}
	return 1, err
}

// datagram returns the datagram of the last read and its source, not yet
// unmapped. b is valid until the next read.
func (r *datagramReader) datagram(int) (b []byte, src netip.AddrPort) {
	return r.buf[:r.n], r.src
}

// rawSender is Linux only: elsewhere writes go through net.UDPConn.
type rawSender struct{}

func newRawSender(*net.UDPConn) *rawSender { return nil }

func (*rawSender) close() {}

func (*rawSender) send([]byte, netip.AddrPort) (int, bool, error) { return 0, true, nil }
