//go:build interop

package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/media/rtpengine"
)

// media/rtpengine against the real rtpengine (Debian package
// rtpengine-daemon), in userspace mode on loopback: offer and answer
// through the client, RTP both ways through the ports of the rewritten
// descriptions, the delete's statistics. Set HLAS_RTPENGINE_RECORD to a
// file to write the NG exchange down (media/rtpengine/testdata holds one,
// which the package's unit tests replay).

// rtpengineDaemon is a running rtpengine.
type rtpengineDaemon struct {
	ng     string // NG control address, host:port
	output *outputBuffer
	cmd    *exec.Cmd
	done   chan struct{}
}

// startRtpengine runs rtpengine in the foreground: userspace forwarding
// (--table=-1, no kernel module), RTP ports from a random window of
// 20000-29999 (below Linux's ephemeral range, which the other tests'
// sockets use), the NG protocol on a free loopback port. A missing or
// failing binary fails the test: CI installs rtpengine-daemon.
func startRtpengine(t *testing.T) *rtpengineDaemon {
	t.Helper()
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	return startRtpengineOn(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// startRtpengineOn is startRtpengine with the NG control socket on ng.
func startRtpengineOn(t *testing.T, ng string) *rtpengineDaemon {
	t.Helper()
	return startRtpengineIn(t, nil, "127.0.0.1", ng)
}

// startRtpengineIn is startRtpengine inside a network namespace (nil: this
// one), relaying on the interface address iface.
func startRtpengineIn(t *testing.T, ns *netns, iface, ng string, extra ...string) *rtpengineDaemon {
	t.Helper()
	bin, err := exec.LookPath("rtpengine")
	if err != nil {
		bin = "/usr/bin/rtpengine"
		if _, serr := os.Stat(bin); serr != nil {
			t.Fatalf("rtpengine is required but not installed (%v); install the Debian package rtpengine-daemon, "+
				"e.g. by running `bash .ci/run`", err)
		}
	}
	low := 20000 + 2*rand.IntN(4900)
	d := &rtpengineDaemon{
		ng:     ng,
		output: &outputBuffer{limit: 1 << 20},
		done:   make(chan struct{}),
	}
	args := []string{
		"--config-file=none", // not /etc/rtpengine/rtpengine.conf
		"--table=-1",         // no kernel forwarding
		"--interface=" + iface,
		"--listen-ng=" + d.ng,
		"--port-min=" + strconv.Itoa(low), "--port-max=" + strconv.Itoa(low+99),
		"--foreground", "--log-stderr", "--log-level=6",
	}
	args = append(args, extra...)
	if ns != nil {
		d.cmd = ns.command(append([]string{bin}, args...)...)
	} else {
		d.cmd = exec.Command(bin, args...)
	}
	d.cmd.Stdout, d.cmd.Stderr = d.output, d.output
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Logf("rtpengine: %s %s", bin, strings.Join(args, " "))
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("rtpengine output:\n%s", d.output.Tail(maxLoggedOutput))
		}
	})
	deadline := time.Now().Add(readyTimeout)
	for !strings.Contains(d.output.String(), "Startup complete") {
		select {
		case <-d.done:
			t.Fatalf("rtpengine exited at startup (%v):\n%s", d.cmd.ProcessState, d.output.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("rtpengine did not start:\n%s", d.output.String())
		}
	}
	return d
}

// stop ends rtpengine with SIGTERM, as its service would be stopped.
func (d *rtpengineDaemon) stop(t *testing.T) {
	t.Helper()
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(shutdownTimeout):
		d.cmd.Process.Kill()
		<-d.done
		t.Errorf("rtpengine did not stop on SIGTERM")
	}
}

// ngRecorder is a UDP relay between the client and rtpengine that writes
// down each request (its first transmission) and the reply to it.
type ngRecorder struct {
	down, up *net.UDPConn
	mu       sync.Mutex
	client   *net.UDPAddr
	order    []string // cookies in the order of the requests
	req, rep map[string]string
	wg       sync.WaitGroup
}

func newNGRecorder(t *testing.T, upstream string) *ngRecorder {
	t.Helper()
	down, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	raddr, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	r := &ngRecorder{down: down, up: up, req: map[string]string{}, rep: map[string]string{}}
	r.wg.Add(2)
	go func() { // client → rtpengine
		defer r.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := down.ReadFromUDP(buf)
			if err != nil {
				return
			}
			cookie, doc, _ := bytes.Cut(buf[:n], []byte(" "))
			r.mu.Lock()
			r.client = from
			if _, seen := r.req[string(cookie)]; !seen {
				r.order = append(r.order, string(cookie))
				r.req[string(cookie)] = string(doc)
			}
			r.mu.Unlock()
			up.Write(buf[:n])
		}
	}()
	go func() { // rtpengine → client
		defer r.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			cookie, doc, _ := bytes.Cut(buf[:n], []byte(" "))
			r.mu.Lock()
			if _, seen := r.rep[string(cookie)]; !seen {
				r.rep[string(cookie)] = string(doc)
			}
			client := r.client
			r.mu.Unlock()
			if client != nil {
				down.WriteToUDP(buf[:n], client)
			}
		}
	}()
	t.Cleanup(func() {
		down.Close()
		up.Close()
		r.wg.Wait()
	})
	return r
}

func (r *ngRecorder) addr() string { return r.down.LocalAddr().String() }

// save writes the exchange as JSON: requests and replies without their
// cookies, in the order of the requests.
func (r *ngRecorder) save(t *testing.T, path, version string) {
	t.Helper()
	type exchange struct {
		Request  string `json:"request"`
		Response string `json:"response"`
	}
	out := struct {
		Rtpengine string     `json:"rtpengine"`
		Note      string     `json:"note"`
		Exchanges []exchange `json:"exchanges"`
	}{Rtpengine: version, Note: "recorded by test/interop/rtpengine_test.go (HLAS_RTPENGINE_RECORD); cookies removed"}
	r.mu.Lock()
	for _, c := range r.order {
		out.Exchanges = append(out.Exchanges, exchange{Request: r.req[c], Response: r.rep[c]})
	}
	r.mu.Unlock()
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("NG exchange written to %s", path)
}

var mLine = regexp.MustCompile(`(?m)^m=audio (\d+) RTP/AVP`)

// sdpPort returns the port of the description's audio stream.
func sdpPort(t *testing.T, who string, sdp []byte) int {
	t.Helper()
	m := mLine.FindSubmatch(sdp)
	if m == nil {
		t.Fatalf("%s: no m=audio line in:\n%s", who, sdp)
	}
	p, _ := strconv.Atoi(string(m[1]))
	return p
}

// rtpPeer is one party's RTP socket.
type rtpPeer struct {
	conn *net.UDPConn
	port int
}

func newRTPPeer(t *testing.T) *rtpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rtpPeer{conn: c, port: c.LocalAddr().(*net.UDPAddr).Port}
}

// send sends n RTP packets of PCMU (payload type 0) with ssrc to port.
func (p *rtpPeer) send(t *testing.T, port, n int, ssrc uint32, payloadLen int) {
	t.Helper()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	for i := range n {
		pkt := rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(100 + i), Timestamp: uint32(i * 160), SSRC: ssrc},
			Payload: bytes.Repeat([]byte{byte(i)}, payloadLen),
		}
		b, err := pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.conn.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // a paced stream, as a phone sends
	}
}

// receive reads RTP until n packets came or wait passed since the last
// one, and returns them.
func (p *rtpPeer) receive(t *testing.T, n int, wait time.Duration) []rtp.Packet {
	t.Helper()
	var got []rtp.Packet
	buf := make([]byte, 2048)
	for len(got) < n {
		p.conn.SetReadDeadline(time.Now().Add(wait))
		k, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(append([]byte(nil), buf[:k]...)); err != nil {
			t.Errorf("not an RTP packet (%v): % x", err, buf[:k])
			continue
		}
		got = append(got, pkt)
	}
	return got
}

// checkStream asserts that the packets are the n sent with ssrc, whole.
func checkStream(t *testing.T, who string, got []rtp.Packet, n int, ssrc uint32, payloadLen int) {
	t.Helper()
	if len(got) != n {
		t.Errorf("%s received %d of %d RTP packets", who, len(got), n)
	}
	for i, p := range got {
		if p.SSRC != ssrc || len(p.Payload) != payloadLen || p.PayloadType != 0 {
			t.Errorf("%s: packet %d: SSRC %#x payload type %d, %d bytes of payload; want SSRC %#x, PCMU, %d bytes",
				who, i, p.SSRC, p.PayloadType, len(p.Payload), ssrc, payloadLen)
		}
	}
}

func rtpengineVersion(t *testing.T, out string) string {
	if _, v, ok := strings.Cut(out, "Startup complete, version "); ok {
		v, _, _ = strings.Cut(v, "\n")
		return strings.TrimSpace(v)
	}
	return "unknown"
}

// A call through rtpengine: the caller is behind a NAT (its SDP names a
// private address, its SIP comes from 127.0.0.1), the callee is not.
func TestRtpengineCall(t *testing.T) {
	d := startRtpengine(t)
	rec := newNGRecorder(t, d.ng)
	reg := prometheus.NewRegistry()
	c, err := rtpengine.New(rtpengine.Config{Address: "udp:" + rec.addr(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}

	caller, callee := newRTPPeer(t), newRTPPeer(t)
	loopback := netip.MustParseAddr("127.0.0.1")
	const callID, fromTag, toTag = "rtpe-interop-1@hlas.test", "caller-tag-1", "callee-tag-1"
	offerSDP := fmt.Sprintf("v=0\r\no=alice 2890844526 2890844526 IN IP4 192.168.1.10\r\ns=-\r\n"+
		"c=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\n"+
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n", caller.port)
	offered, err := c.Offer(ctx, &media.Request{CallID: callID, FromTag: fromTag, SDP: []byte(offerSDP),
		Source: loopback, Advertise: loopback})
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	toCallee := sdpPort(t, "offer", offered)
	if bytes.Contains(offered, []byte("192.168.1.10")) || !bytes.Contains(offered, []byte("c=IN IP4 127.0.0.1\r\n")) ||
		!bytes.Contains(offered, []byte("o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n")) || toCallee == caller.port {
		t.Errorf("offer not rewritten to rtpengine's address and port:\n%s", offered)
	}

	answerSDP := fmt.Sprintf("v=0\r\no=bob 2808844564 2808844564 IN IP4 127.0.0.1\r\ns=-\r\n"+
		"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\n"+
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n", callee.port)
	answered, err := c.Answer(ctx, &media.Request{CallID: callID, FromTag: toTag, ToTag: fromTag, SDP: []byte(answerSDP),
		Source: loopback, Advertise: loopback})
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	toCaller := sdpPort(t, "answer", answered)
	if toCaller == callee.port || toCaller == toCallee || !bytes.Contains(answered, []byte("c=IN IP4 127.0.0.1\r\n")) {
		t.Errorf("answer not rewritten to rtpengine's address and a port of its own:\n%s", answered)
	}

	// RTP both ways. SIP-source-address sent the caller's media to
	// 127.0.0.1 (where its SIP came from) from the first packet, although
	// its SDP said 192.168.1.10: nothing may be lost.
	const n, callerPayload, calleePayload = 10, 160, 80
	const callerSSRC, calleeSSRC = 0x11111111, 0x22222222
	caller.send(t, toCaller, n, callerSSRC, callerPayload)
	callee.send(t, toCallee, n, calleeSSRC, calleePayload)
	checkStream(t, "callee", callee.receive(t, n, 2*time.Second), n, callerSSRC, callerPayload)
	checkStream(t, "caller", caller.receive(t, n, 2*time.Second), n, calleeSSRC, calleePayload)

	want := media.Stats{
		Caller:  media.Direction{Packets: n, Bytes: n * (12 + callerPayload)},
		Callee:  media.Direction{Packets: n, Bytes: n * (12 + calleePayload)},
		Streams: 1,
	}
	q, err := c.Query(ctx, callID)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if q.Caller != want.Caller || q.Callee != want.Callee || q.Streams != want.Streams {
		t.Errorf("query: %+v, want %+v", q, want)
	}

	st, err := c.Delete(ctx, callID)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if st.Caller != want.Caller || st.Callee != want.Callee || st.Streams != want.Streams || st.Duration <= 0 {
		t.Errorf("delete: %+v, want %+v and a duration", st, want)
	}

	// Deleted means no longer relayed (the client sends delete-delay 0).
	caller.send(t, toCaller, 3, callerSSRC, callerPayload)
	if got := callee.receive(t, 1, 500*time.Millisecond); len(got) != 0 {
		t.Errorf("callee received %d packets after the delete", len(got))
	}
	if _, err := c.Delete(ctx, callID); !errors.Is(err, media.ErrNoSession) {
		t.Errorf("second delete: %v, want ErrNoSession", err)
	}

	// rtpengine's refusals as media errors.
	_, err = c.Answer(ctx, &media.Request{CallID: "rtpe-interop-unknown@hlas.test", FromTag: "b", ToTag: "a",
		SDP: []byte(answerSDP), Source: loopback})
	var re *rtpengine.ReplyError
	if !errors.Is(err, media.ErrNoSession) || !errors.As(err, &re) || re.Reason != "Unknown call-id" {
		t.Errorf("answer to an unknown call: %v, want ErrNoSession from \"Unknown call-id\"", err)
	}
	_, err = c.Offer(ctx, &media.Request{CallID: "rtpe-interop-2@hlas.test", FromTag: "x", SDP: []byte("garbage"), Source: loopback})
	if !errors.Is(err, media.ErrBadSDP) {
		t.Errorf("offer of a malformed SDP: %v, want ErrBadSDP", err)
	}

	if path := os.Getenv("HLAS_RTPENGINE_RECORD"); path != "" && !t.Failed() {
		rec.save(t, path, rtpengineVersion(t, d.output.String()))
	}
}

// A client whose rtpengine went away reports media.ErrUnavailable after
// its attempts (the ICMP port unreachable its requests draw does not stop
// its reader), and answers again once rtpengine is back on the port.
func TestRtpengineRestart(t *testing.T) {
	d := startRtpengine(t)
	c, err := rtpengine.New(rtpengine.Config{Address: d.ng, Timeout: 100 * time.Millisecond, Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	d.stop(t)
	if err := c.Ping(ctx); !errors.Is(err, media.ErrUnavailable) {
		t.Fatalf("ping after rtpengine stopped: %v, want ErrUnavailable", err)
	}
	d2 := startRtpengineOn(t, d.ng)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping after rtpengine restarted on %s: %v", d2.ng, err)
	}
}
