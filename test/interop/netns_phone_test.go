//go:build interop

package interop

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A phone is baresip running in a namespace of its own: a 440 Hz sine as
// its microphone, G.711 µ-law at 20 ms (50 RTP packets a second each
// way), auto-answer, driven over its ctrl_tcp socket (commands, and
// events with the time they arrived). Its audio is measured per packet:
// a packet socket on its interface, opened in its namespace by the test
// process, stamps every RTP packet that reaches its RTP ports and every
// one that leaves them (RTCP, on the same ports, is told apart by its
// packet type and not counted, so a held call is silent).

const (
	// phoneRTPMin and phoneRTPMax bound the phones' RTP (and RTCP) ports.
	phoneRTPMin, phoneRTPMax = 40000, 40019
	// rtpRate is the packet rate of one direction of a G.711 call at
	// 20 ms packetization.
	rtpRate = 50
	// phoneCtrlPort is baresip's ctrl_tcp port, on the phone's loopback.
	phoneCtrlPort = 4444
	// phoneIf is the phone's only interface besides loopback.
	phoneIf = "eth0"
)

// phoneRTPPorts is the port range as iptables writes it.
var phoneRTPPorts = fmt.Sprintf("%d:%d", phoneRTPMin, phoneRTPMax)

// phone is one baresip in a namespace.
type phone struct {
	name string // for messages: "alice"
	user string // AOR: alice@example.test
	ns   netns
	cmd  *exec.Cmd
	out  *outputBuffer
	done chan struct{} // closed when baresip has been waited for
	err  error         // cmd.Wait's, valid after done

	ctrl net.Conn

	mu      sync.Mutex
	events  []phoneEvent
	replies map[string]chan ctrlReply
	rx, tx  []time.Time // arrival of each RTP packet received and sent
	// badSum counts received RTP packets whose UDP checksum is wrong:
	// the phone's kernel drops them, so they are not in rx.
	badSum uint64
}

// phoneEvent is one ctrl_tcp event, stamped on arrival.
type phoneEvent struct {
	At    time.Time
	Type  string `json:"type"`
	Param string `json:"param"`
}

// ctrlReply is ctrl_tcp's answer to a command.
type ctrlReply struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// phoneConfig describes a phone to startPhone.
type phoneConfig struct {
	name   string // user part, also the phone's name in messages
	ns     netns
	addr   string // the phone's own address, no brackets
	server string // hlas as host:port (IPv6 in brackets)
	ipv6   bool
}

// startPhone starts baresip in cfg.ns registered (open domain, no
// password) as name@example.test through hlas at cfg.server, waits for
// its registration and connects to its control socket. It is stopped
// when the test ends.
func startPhone(t *testing.T, cfg phoneConfig) *phone {
	t.Helper()
	p := &phone{name: cfg.name, user: cfg.name + "@example.test", ns: cfg.ns,
		out: &outputBuffer{limit: 4 << 20}, done: make(chan struct{}), replies: map[string]chan ctrlReply{}}
	p.capture(t)

	listen := net.JoinHostPort(cfg.addr, "5060")
	dir := baresipConfigWith(t, listen, baresipOptions{
		rtpPorts: fmt.Sprintf("%d-%d", phoneRTPMin, phoneRTPMax),
		accounts: fmt.Sprintf("<sip:%s>;outbound=\"sip:%s\";regint=300;answermode=auto;audio_codecs=PCMU/8000/1\n",
			p.user, cfg.server),
		extra: []string{
			fmt.Sprintf("ctrl_tcp_listen 127.0.0.1:%d", phoneCtrlPort),
			"module_app ctrl_tcp.so",
		},
	})
	args := []string{"baresip", "-f", dir}
	if cfg.ipv6 {
		args = append(args, "-6")
	} else {
		args = append(args, "-4")
	}
	p.cmd = p.ns.command(args...) // ip netns exec replaces itself with baresip
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started %s: baresip (pid %d) in %s at %s", p.name, p.cmd.Process.Pid, p.ns.name, listen)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })

	if !waitFor(readyTimeout, func() bool { return strings.Contains(p.out.String(), "baresip is ready") || p.exited() }) {
		t.Fatalf("%s: baresip not ready within %v:\n%s", p.name, readyTimeout, tail(p.out.String(), 4000))
	}
	if !waitFor(readyTimeout, func() bool { return strings.Contains(p.out.String(), "200 OK") || p.exited() }) || p.exited() {
		t.Fatalf("%s: baresip did not register with hlas at %s:\n%s", p.name, cfg.server, tail(p.out.String(), 4000))
	}
	p.connect(t)
	return p
}

// exited reports whether baresip has ended.
func (p *phone) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends baresip (SIGTERM, SIGKILL after 5 s) and the sampler.
func (p *phone) stop(t *testing.T) {
	if p.ctrl != nil {
		p.ctrl.Close()
	}
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	if t.Failed() {
		t.Logf("%s (baresip in %s) output:\n%s", p.name, p.ns.name, tail(p.out.String(), 6000))
	}
}

// connect opens the control connection (from inside the phone's
// namespace) and starts reading it.
func (p *phone) connect(t *testing.T) {
	t.Helper()
	var err error
	ok := waitFor(readyTimeout, func() bool {
		err = p.ns.do(func() error {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", phoneCtrlPort), time.Second)
			p.ctrl = c
			return err
		})
		return err == nil
	})
	if !ok {
		t.Fatalf("%s: no ctrl_tcp connection: %v", p.name, err)
	}
	go p.readCtrl()
}

// readCtrl reads netstrings ("len:json,") until the connection closes:
// events are kept, replies handed to the command waiting for them.
func (p *phone) readCtrl() {
	r := bufio.NewReader(p.ctrl)
	for {
		lenText, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenText, ":"))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		msg := make([]byte, n+1) // the message and its trailing comma
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		var head struct {
			Event    bool `json:"event"`
			Response bool `json:"response"`
		}
		if json.Unmarshal(msg[:n], &head) != nil {
			continue
		}
		switch {
		case head.Event:
			ev := phoneEvent{At: time.Now()}
			if json.Unmarshal(msg[:n], &ev) == nil {
				p.mu.Lock()
				p.events = append(p.events, ev)
				p.mu.Unlock()
			}
		case head.Response:
			var rep ctrlReply
			if json.Unmarshal(msg[:n], &rep) == nil {
				p.mu.Lock()
				ch := p.replies[rep.Token]
				delete(p.replies, rep.Token)
				p.mu.Unlock()
				if ch != nil {
					ch <- rep
				}
			}
		}
	}
}

// command runs a baresip command (dial, hangup, hold, resume ...) and
// fails the test unless baresip accepts it. It returns when it was sent.
func (p *phone) command(t *testing.T, cmd, params string) time.Time {
	t.Helper()
	token := fmt.Sprintf("%s-%d", cmd, time.Now().UnixNano())
	ch := make(chan ctrlReply, 1)
	p.mu.Lock()
	p.replies[token] = ch
	p.mu.Unlock()
	msg, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": token})
	sent := time.Now()
	if _, err := fmt.Fprintf(p.ctrl, "%d:%s,", len(msg), msg); err != nil {
		t.Fatalf("%s: send %q: %v", p.name, cmd, err)
	}
	select {
	case rep := <-ch:
		if !rep.OK {
			t.Fatalf("%s: baresip refused %q %q: %q", p.name, cmd, params, rep.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no reply to %q from baresip", p.name, cmd)
	}
	return sent
}

// eventsOf returns the events of type typ so far.
func (p *phone) eventsOf(typ string) []phoneEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	var evs []phoneEvent
	for _, e := range p.events {
		if e.Type == typ {
			evs = append(evs, e)
		}
	}
	return evs
}

// waitEvent waits for the n-th (from 1) event of type typ and returns it.
func (p *phone) waitEvent(typ string, n int, timeout time.Duration) (phoneEvent, bool) {
	var ev phoneEvent
	ok := waitFor(timeout, func() bool {
		evs := p.eventsOf(typ)
		if len(evs) >= n {
			ev = evs[n-1]
			return true
		}
		return false
	})
	return ev, ok
}

// eventLog renders the events from since on for a failure message.
func (p *phone) eventLog(since time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, e := range p.events {
		if e.At.Before(since) {
			continue
		}
		fmt.Fprintf(&b, "  %+.2fs %s %s\n", e.At.Sub(since).Seconds(), e.Type, e.Param)
	}
	return b.String()
}

// capture opens a packet socket on the phone's interface and records
// the RTP it sees until the test ends.
func (p *phone) capture(t *testing.T) {
	t.Helper()
	fd := -1
	err := p.ns.do(func() error {
		ifi, err := net.InterfaceByName(phoneIf)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err == nil {
		// A timeout on reads, so the reader sees the end of the test.
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
	}
	if err == nil {
		// The kernel's time of each packet, not the reader's: a reader
		// held up by a busy machine must not move packets in time.
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		t.Fatalf("%s: packet socket on %s in %s: %v", p.name, phoneIf, p.ns.name, err)
	}
	stop, finished := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-finished
		unix.Close(fd)
	})
	go func() {
		defer close(finished)
		buf, oob := make([]byte, 4096), make([]byte, 256)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return
			}
			at, ok := packetTime(oob[:oobn])
			if !ok {
				at = time.Now()
			}
			ll, ok := from.(*unix.SockaddrLinklayer)
			if !ok {
				continue
			}
			sport, dport, ok := rtpPorts(buf[:n])
			switch {
			case !ok:
			case ll.Pkttype == unix.PACKET_HOST && dport >= phoneRTPMin && dport <= phoneRTPMax:
				// The lab has checksum offload off (connectIf): every
				// checksum arrives complete and can be checked here.
				good := udpChecksumOK(buf[:n])
				p.mu.Lock()
				if good {
					p.rx = append(p.rx, at)
				} else {
					p.badSum++
				}
				p.mu.Unlock()
			case ll.Pkttype == unix.PACKET_OUTGOING && sport >= phoneRTPMin && sport <= phoneRTPMax:
				p.mu.Lock()
				p.tx = append(p.tx, at)
				p.mu.Unlock()
			}
		}
	}()
}

// packetTime returns the kernel's timestamp from a packet's control
// messages (SO_TIMESTAMPNS).
func packetTime(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			// struct timespec: two 64-bit words on 64-bit Linux.
			sec, nsec := binary.NativeEndian.Uint64(m.Data), binary.NativeEndian.Uint64(m.Data[8:])
			return time.Unix(int64(sec), int64(nsec)), true
		}
	}
	return time.Time{}, false
}

// htons is the network byte order of a protocol number, as packet
// sockets take it.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// rtpPorts reads an IPv4 or IPv6 packet and, if it is UDP carrying RTP
// (version 2, and a second byte outside the RTCP packet types 192-223 of
// RFC 5761 §4), returns its ports.
func rtpPorts(pkt []byte) (sport, dport int, ok bool) {
	if len(pkt) < 1 {
		return 0, 0, false
	}
	var udp []byte
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		if len(pkt) < 20 || ihl < 20 || len(pkt) < ihl || pkt[9] != unix.IPPROTO_UDP || pkt[6]&0x3f != 0 || pkt[7] != 0 {
			return 0, 0, false // not UDP, or a fragment
		}
		udp = pkt[ihl:]
	case 6:
		if len(pkt) < 40 || pkt[6] != unix.IPPROTO_UDP {
			return 0, 0, false
		}
		udp = pkt[40:]
	default:
		return 0, 0, false
	}
	if len(udp) < 8+12 {
		return 0, 0, false
	}
	rtp := udp[8:]
	if rtp[0]>>6 != 2 || (rtp[1] >= 192 && rtp[1] <= 223) {
		return 0, 0, false
	}
	return int(udp[0])<<8 | int(udp[1]), int(udp[2])<<8 | int(udp[3]), true
}

// udpChecksumOK checks the UDP checksum of an IPv4 or IPv6 packet that
// rtpPorts accepted (RFC 768, RFC 8200 §8.1): the one's complement sum
// over the pseudo-header and the datagram must be all ones. IPv4's zero
// (no checksum) passes.
func udpChecksumOK(pkt []byte) bool {
	var pseudo []byte
	var udp []byte
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		udp = pkt[ihl:]
		if udp[6] == 0 && udp[7] == 0 {
			return true
		}
		pseudo = append(pseudo, pkt[12:20]...)
	case 6:
		udp = pkt[40:]
		pseudo = append(pseudo, pkt[8:40]...)
	}
	ulen := int(udp[4])<<8 | int(udp[5])
	if ulen < 8 || ulen > len(udp) {
		return false
	}
	udp = udp[:ulen]
	pseudo = append(pseudo, 0, 0, byte(ulen>>8), byte(ulen), 0, 0, 0, unix.IPPROTO_UDP)
	var sum uint32
	for _, b := range [][]byte{pseudo, udp} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

// rtpCount is what a phone's capture saw in a span of time: the RTP
// packets it received and sent.
type rtpCount struct {
	In, Out uint64
	Span    time.Duration
	// BadSum is how many RTP packets with a wrong UDP checksum the
	// phone received so far, in the whole test.
	BadSum uint64
}

// rtpBetween counts the packets in [from, to), waiting until to has
// passed (and a little more, for the capture to catch up).
func (p *phone) rtpBetween(from, to time.Time) rtpCount {
	if d := time.Until(to) + 50*time.Millisecond; d > 0 {
		time.Sleep(d)
	}
	count := func(ts []time.Time) uint64 {
		var n uint64
		for _, at := range ts {
			if !at.Before(from) && at.Before(to) {
				n++
			}
		}
		return n
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return rtpCount{In: count(p.rx), Out: count(p.tx), Span: to.Sub(from), BadSum: p.badSum}
}

// rtpPerSecond returns the packets received in each whole second of
// [from, to), counted back from to so that the last second before to is
// always one of them (a partial first second is left out), for messages
// and for the check that audio flowed all along.
func (p *phone) rtpPerSecond(from, to time.Time) []uint64 {
	n := int(to.Sub(from) / time.Second)
	per := make([]uint64, n)
	for i := range per {
		start := to.Add(-time.Duration(n-i) * time.Second)
		per[i] = p.rtpBetween(start, start.Add(time.Second)).In
	}
	return per
}

// FuzzRTPPorts: whatever the packet socket hands over, the classifier
// answers without panicking, and only for UDP long enough to hold RTP.
func FuzzRTPPorts(f *testing.F) {
	rtp := make([]byte, 20+8+12+160)
	rtp[0], rtp[9] = 0x45, unix.IPPROTO_UDP
	rtp[20], rtp[21], rtp[22], rtp[23] = 0x9c, 0x40, 0x9c, 0x41 // 40000 -> 40001
	rtp[28] = 0x80
	f.Add(rtp)
	rtcp := append([]byte(nil), rtp...)
	rtcp[29] = 200
	f.Add(rtcp)
	v6 := make([]byte, 40+8+12)
	v6[0], v6[6], v6[48] = 0x60, unix.IPPROTO_UDP, 0x80
	f.Add(v6)
	f.Add([]byte{0x45})
	f.Add([]byte{0x4f, 0, 0, 0, 0, 0, 0, 0, 0, 17})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		sport, dport, ok := rtpPorts(pkt)
		if !ok {
			if sport != 0 || dport != 0 {
				t.Fatalf("ports %d, %d without RTP", sport, dport)
			}
			return
		}
		if len(pkt) < 20+8+12 || sport < 0 || sport > 65535 || dport < 0 || dport > 65535 {
			t.Fatalf("RTP in %d bytes, ports %d, %d", len(pkt), sport, dport)
		}
		udpChecksumOK(pkt) // must not panic on what rtpPorts accepts
	})
}

// TestUDPChecksum: the phones' checksum check accepts a datagram whose
// checksum was computed elsewhere (by Python's arithmetic, 0x730d), and
// refuses it with one payload byte or one address byte changed.
func TestUDPChecksum(t *testing.T) {
	pkt := []byte{0x45, 0, 0, 20 + 8 + 172, 0, 0, 0x40, 0, 64, unix.IPPROTO_UDP, 0, 0,
		198, 51, 100, 1, 192, 168, 1, 10}
	pkt = append(pkt, 0x75, 0x30, 0x9c, 0x40, 0, 8+172, 0x73, 0x0d)
	pkt = append(pkt, 0x80, 0, 0, 1, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44)
	for i := range 160 {
		pkt = append(pkt, byte(i))
	}
	if _, _, ok := rtpPorts(pkt); !ok || !udpChecksumOK(pkt) {
		t.Fatal("a datagram with a correct checksum refused")
	}
	for _, at := range []int{20 + 8 + 50, 19} {
		bad := append([]byte(nil), pkt...)
		bad[at]++
		if udpChecksumOK(bad) {
			t.Errorf("byte %d changed, checksum still accepted", at)
		}
	}
	none := append([]byte(nil), pkt...)
	none[26], none[27] = 0, 0
	if !udpChecksumOK(none) {
		t.Error("IPv4 without a checksum refused")
	}
}
