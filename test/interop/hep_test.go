//go:build interop

package interop

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/capture/hep"
)

// sngrepDebianPackage provides sngrep, whose -L listens for HEP.
const sngrepDebianPackage = "sngrep"

// captured is one SIP message as a HEP collector or sngrep's pcap shows it.
type captured struct {
	ipProto  uint8
	src, dst netip.AddrPort
	payload  string
}

// startCaptureServer runs hlas with capture to udp:collector and node id
// 2001, password hep-pw; the caller stops it with stop.
func startCaptureServer(t *testing.T, collector string) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	yaml := fmt.Sprintf("capture: { hep: %q, node_id: 2001, password: hep-pw, queue: 1024 }\n", "udp:"+collector)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// Four-digit ports for sipsak (serverConfig.lowPorts). Not
	// startServerWith: the test stops the server itself, so that what it
	// captured has all been sent (Close flushes the queue) before the
	// capture is checked.
	s, err := launch(t, serverConfig{lowPorts: true, args: []string{"--config", path}})
	if err != nil {
		t.Fatalf("start hlas: %v", err)
	}
	t.Cleanup(s.kill) // after stop, a no-op
	if err := s.waitReady(readyTimeout); err != nil {
		t.Fatalf("hlas did not become ready: %v\n%s", err, s.output.Tail(maxLoggedOutput))
	}
	return s
}

// sipsakOptions sends one OPTIONS with sipsak over transport (udp, tcp)
// and wants its 200.
func sipsakOptions(t *testing.T, srv *server, transport string) {
	t.Helper()
	args := []string{"-vv", "-H", "127.0.0.1", "-s", "sip:" + srv.UDP4}
	if transport == "tcp" {
		args = append(args, "-E", "tcp")
	}
	out, err := runSipsak(t, args...)
	if err != nil || !sipsakFinal.MatchString(out) {
		t.Fatalf("sipsak %s: exit %v, want a 200:\n%s", strings.Join(args, " "), err, tail(out, 4000))
	}
}

// checkExchange finds sipsak's OPTIONS over transport to srv and the 200
// to it among msgs, and checks their addresses; wantProto is the IP
// protocol the capture must show for it, 0 for any.
func checkExchange(t *testing.T, msgs []captured, srv *server, transport string, wantProto uint8) {
	t.Helper()
	server := netip.MustParseAddrPort(srv.UDP4)
	via := "Via: SIP/2.0/" + strings.ToUpper(transport) + " "
	var req *captured
	for i, m := range msgs {
		if strings.HasPrefix(m.payload, "OPTIONS ") && strings.Contains(m.payload, "User-Agent: sipsak") &&
			strings.Contains(m.payload, via) {
			req = &msgs[i]
			break
		}
	}
	if req == nil {
		t.Fatalf("no sipsak OPTIONS over %s captured among %d messages", transport, len(msgs))
	}
	if req.dst != server || !req.src.Addr().IsLoopback() || (wantProto != 0 && req.ipProto != wantProto) {
		t.Errorf("OPTIONS over %s captured as IP protocol %d from %s to %s, want %d from loopback to %s",
			transport, req.ipProto, req.src, req.dst, wantProto, server)
	}
	callID := sipHeader(req.payload, "Call-ID")
	for _, m := range msgs {
		if strings.HasPrefix(m.payload, "SIP/2.0 200 ") && sipHeader(m.payload, "Call-ID") == callID {
			if m.src != server || m.dst != req.src || (wantProto != 0 && m.ipProto != wantProto) {
				t.Errorf("200 over %s captured as IP protocol %d from %s to %s, want %d from %s to %s",
					transport, m.ipProto, m.src, m.dst, wantProto, server, req.src)
			}
			return
		}
	}
	t.Errorf("no 200 to the OPTIONS over %s (Call-ID %s) captured", transport, callID)
}

func sipHeader(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestHEPCaptureCollector: `hlas serve` with capture on sends sipsak's
// OPTIONS (UDP and TCP) and its 200s to a HEP collector the test runs,
// with the transport's addresses, IP protocol, node id and password.
func TestHEPCaptureCollector(t *testing.T) {
	t.Parallel()
	col, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	var (
		mu   sync.Mutex
		msgs []captured
		bad  []string
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := col.Read(buf)
			if err != nil {
				return
			}
			p, err := hep.Decode(buf[:n])
			mu.Lock()
			switch {
			case err != nil:
				bad = append(bad, err.Error())
			case p.NodeID != 2001 || p.Password != "hep-pw" || p.ProtoType != hep.ProtoSIP:
				bad = append(bad, fmt.Sprintf("node %d, password %q, protocol type %d", p.NodeID, p.Password, p.ProtoType))
			default:
				msgs = append(msgs, captured{p.IPProtocol, p.Src, p.Dst, string(p.Payload)})
			}
			mu.Unlock()
		}
	}()
	srv := startCaptureServer(t, col.LocalAddr().String())
	sipsakOptions(t, srv, "udp")
	sipsakOptions(t, srv, "tcp")
	srv.stop(t) // Close sends what is still queued
	// hlas has exited, so all it sent is in the socket's buffer: the
	// reader drains it, then times out.
	_ = col.SetReadDeadline(time.Now().Add(time.Second))
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(bad) != 0 {
		t.Errorf("bad HEP packets: %q", bad)
	}
	checkExchange(t, msgs, srv, "udp", hep.IPProtoUDP)
	checkExchange(t, msgs, srv, "tcp", hep.IPProtoTCP)
}

// TestHEPCaptureSngrep: sngrep listening for HEP (-L) sees the messages
// `hlas serve` captures and writes them to a pcap file (-O), each with
// its addresses. sngrep writes every HEP message as UDP over IPv4 in the
// pcap, whatever the IP protocol chunk says, so only the addresses,
// ports and payloads are checked there.
func TestHEPCaptureSngrep(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("sngrep")
	if err != nil {
		t.Fatalf("sngrep is required but not installed (%v); install the Debian package %q, e.g. by running `bash .ci/run`",
			err, sngrepDebianPackage)
	}
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	pcap := filepath.Join(t.TempDir(), "hep.pcap")
	// -N: no interface; -F: no configuration file; -L: listen for HEP.
	cmd := exec.Command(bin, "-N", "-F", "-L", "udp:"+listen, "-O", pcap)
	var out outputBuffer
	out.limit = 1 << 20
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	// Ready once it holds the port.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if pc, err := net.ListenPacket("udp", listen); err != nil {
			break
		} else {
			pc.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("sngrep did not bind %s:\n%s", listen, out.Tail(4000))
		}
		time.Sleep(20 * time.Millisecond)
	}

	srv := startCaptureServer(t, listen)
	sipsakOptions(t, srv, "udp")
	sipsakOptions(t, srv, "tcp")
	srv.stop(t)
	// sngrep flushes its pcap when interrupted.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("sngrep did not exit on SIGINT:\n%s", out.Tail(4000))
	}
	b, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := readSngrepPcap(b)
	if err != nil {
		t.Fatalf("sngrep's pcap: %v", err)
	}
	t.Logf("sngrep wrote %d messages; its output ends %q", len(msgs), tail(out.String(), 60))
	checkExchange(t, msgs, srv, "udp", 0)
	checkExchange(t, msgs, srv, "tcp", 0)
}

// readSngrepPcap reads a classic pcap file of Ethernet frames carrying
// IPv4 or IPv6 and UDP or TCP, as sngrep writes them.
func readSngrepPcap(b []byte) ([]captured, error) {
	if len(b) < 24 {
		return nil, errors.New("no pcap header")
	}
	var order binary.ByteOrder
	switch {
	case bytes.Equal(b[:4], []byte{0xd4, 0xc3, 0xb2, 0xa1}):
		order = binary.LittleEndian
	case bytes.Equal(b[:4], []byte{0xa1, 0xb2, 0xc3, 0xd4}):
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("magic % x", b[:4])
	}
	if lt := order.Uint32(b[20:24]); lt != 1 {
		return nil, fmt.Errorf("link type %d, want 1 (Ethernet)", lt)
	}
	var msgs []captured
	for rest := b[24:]; len(rest) > 0; {
		if len(rest) < 16 {
			return nil, errors.New("truncated record header")
		}
		n := int(order.Uint32(rest[8:12]))
		if 16+n > len(rest) {
			return nil, errors.New("truncated record")
		}
		frame := rest[16 : 16+n]
		rest = rest[16+n:]
		if len(frame) < 14 {
			return nil, errors.New("short frame")
		}
		var m captured
		var l4 []byte
		switch ip := frame[14:]; binary.BigEndian.Uint16(frame[12:14]) {
		case 0x0800:
			ihl := int(ip[0]&0x0f) * 4
			if len(ip) < 20 || ihl < 20 || len(ip) < ihl {
				return nil, errors.New("short IPv4 header")
			}
			m.ipProto = ip[9]
			m.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), 0)
			m.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), 0)
			l4 = ip[ihl:]
		case 0x86dd:
			if len(ip) < 40 {
				return nil, errors.New("short IPv6 header")
			}
			m.ipProto = ip[6]
			m.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[8:24])), 0)
			m.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[24:40])), 0)
			l4 = ip[40:]
		default:
			continue
		}
		hl := 8
		if m.ipProto == 6 {
			if len(l4) < 20 {
				return nil, errors.New("short TCP header")
			}
			hl = int(l4[12]>>4) * 4
		}
		if len(l4) < hl || len(l4) < 8 {
			return nil, errors.New("short transport header")
		}
		m.src = netip.AddrPortFrom(m.src.Addr(), binary.BigEndian.Uint16(l4[0:2]))
		m.dst = netip.AddrPortFrom(m.dst.Addr(), binary.BigEndian.Uint16(l4[2:4]))
		m.payload = string(l4[hl:])
		msgs = append(msgs, m)
	}
	return msgs, nil
}
