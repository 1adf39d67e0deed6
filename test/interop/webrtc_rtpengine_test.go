//go:build interop

package interop

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/internal/bencode"
)

// WebRTC bridged by the real rtpengine instead of hlas's built-in relay:
// the browser (JsSIP in Chromium) and bob (baresip over UDP) of
// webrtc_browser_test.go, with hlas's media engine the rtpengine of
// rtpengine_test.go, so that media/rtpengine's bridge flags make
// rtpengine speak ICE and DTLS-SRTP to the browser and plain RTP to bob.
// Besides TestWebRTCJsSIP's checks, each call must have gone through
// rtpengine: the browser's ICE pair ends on one of its ports, the SDPs it
// wrote are of each side's kind, and its statistics count both sides'
// packets.
//
// rtpengine relays on loopback (127.0.0.1), as in rtpengine_test.go.
// Chromium gathers no loopback candidates, but its host candidate on the
// machine's own address pairs with rtpengine's loopback one: Linux
// carries traffic between a host's own addresses over lo, so it stays on
// this host.

// newWebRTCLabWith is newWebRTCLab with media (YAML flow) as hlas's media
// section instead of the built-in relay's.
func newWebRTCLabWith(t *testing.T, media string) *webrtcLab {
	t.Helper()
	l := &webrtcLab{dir: requireWebRTCTools(t)}
	l.pageURL = serveWebRTCPage(t, l.dir)
	l.fakeAudio = filepath.Join(t.TempDir(), "alice-tone.wav")
	writeToneWAV(t, l.fakeAudio, aliceToneHz)

	cert, key, spki, pool := webrtcCert(t)
	l.spki = spki
	udpPort, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	wssPort, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	udp := net.JoinHostPort("127.0.0.1", strconv.Itoa(udpPort))
	l.wss = net.JoinHostPort("127.0.0.1", strconv.Itoa(wssPort))
	listen := []string{"udp:" + udp, "wss:" + l.wss}

	data := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if out, err := hlasCmd(t, "", "user", "add", u+"@"+webrtcDomain, "--password", webrtcPasswords[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	yaml := fmt.Sprintf("domain: [ %s ]\nlisten: [ %q, %q ]\ntls_cert: %q\ntls_key: %q\nmedia: %s\n",
		webrtcDomain, listen[0], listen[1], cert, key, media)
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("hlas config:\n%s", yaml)
	l.hlas = startServerWith(t, serverConfig{listen: listen, args: []string{"--config", path, "--data", data}})
	waitWSS(t, l.hlas, l.wss, pool)

	l.bob = startWebRTCBob(t, udp)
	return l
}

// ngExchange is one NG request the recorder saw and rtpengine's reply,
// decoded (the reply nil if none came).
type ngExchange struct {
	req, rep map[string]any
}

func (x ngExchange) command() string { s, _ := x.req["command"].(string); return s }
func (x ngExchange) callID() string  { s, _ := x.req["call-id"].(string); return s }
func (x ngExchange) replySDP() string {
	s, _ := x.rep["sdp"].(string)
	return s
}

// exchanges returns the exchanges from the from-th request on, in the
// order of the requests.
func (r *ngRecorder) exchanges(t *testing.T, from int) []ngExchange {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var xs []ngExchange
	for _, c := range r.order[min(from, len(r.order)):] {
		var x ngExchange
		v, err := bencode.Decode([]byte(r.req[c]))
		if x.req, _ = v.(map[string]any); err != nil || x.req == nil {
			t.Fatalf("hlas sent rtpengine an NG request that is not a dictionary (%v): %q", err, r.req[c])
		}
		if rep, ok := r.rep[c]; ok {
			v, err := bencode.Decode([]byte(rep))
			if x.rep, _ = v.(map[string]any); err != nil || x.rep == nil {
				t.Fatalf("rtpengine's reply is not a dictionary (%v): %q", err, rep)
			}
		}
		xs = append(xs, x)
	}
	return xs
}

// count is the number of requests so far.
func (r *ngRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

// logNG logs the NG requests and replies, SDPs written out, for a
// failed test.
func (r *ngRecorder) logNG(t *testing.T) {
	t.Helper()
	var b strings.Builder
	for _, x := range r.exchanges(t, 0) {
		for _, m := range []struct {
			what string
			d    map[string]any
		}{{"request", x.req}, {"reply", x.rep}} {
			keys := make([]string, 0, len(m.d))
			for k := range m.d {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintf(&b, "%s:\n", m.what)
			for _, k := range keys {
				if k == "sdp" {
					fmt.Fprintf(&b, "  sdp:\n    %s\n", strings.ReplaceAll(strings.TrimSpace(m.d[k].(string)), "\r\n", "\n    "))
				} else {
					fmt.Fprintf(&b, "  %s: %v\n", k, m.d[k])
				}
			}
		}
		b.WriteString("\n")
	}
	t.Logf("NG exchange between hlas and rtpengine:\n%s", b.String())
}

// rtpenginePorts returns the RTP port range rtpengine was started with.
func rtpenginePorts(t *testing.T, d *rtpengineDaemon) (low, high int) {
	t.Helper()
	for _, a := range d.cmd.Args {
		if v, ok := strings.CutPrefix(a, "--port-min="); ok {
			low, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(a, "--port-max="); ok {
			high, _ = strconv.Atoi(v)
		}
	}
	if low == 0 || high < low {
		t.Fatalf("no port range in rtpengine's arguments %q", d.cmd.Args)
	}
	return low, high
}

// rtpengineCall checks that the call whose browser events start at event
// index since and whose NG requests start at ng went through rtpengine
// (d, on address iface): the browser's selected ICE pair ends on one of
// rtpengine's ports; hlas sent an offer, an answer and, at the end, a
// delete for one call, each answered; the SDP rtpengine wrote for the
// browser is DTLS-SRTP with ICE, mux and a mid and no SDES, the one for
// bob plain RTP without ICE or DTLS; and the delete's statistics count
// more than webrtcMinPackets RTP packets from each side.
func rtpengineCall(t *testing.T, c webrtcCall, b *webrtcBrowser, since int, rec *ngRecorder, ng int, d *rtpengineDaemon, iface string) {
	t.Helper()
	low, high := rtpenginePorts(t, d)
	var pair string
	b.mu.Lock()
	for _, e := range b.events[since:] {
		if e.Event == "stats" && e.Pair != "" {
			pair = e.Pair
		}
	}
	b.mu.Unlock()
	_, remote, _ := strings.Cut(pair, " -> ")
	remote, _, _ = strings.Cut(remote, " ")
	ap, err := netip.ParseAddrPort(remote)
	if err != nil || ap.Addr().String() != iface || int(ap.Port()) < low || int(ap.Port()) > high {
		t.Errorf("the browser's selected ICE pair is %q, want its remote end on rtpengine's %s, ports %d-%d", pair, iface, low, high)
	}

	// hlas deletes the call when the BYE has gone through, around when
	// the page and bob see the call end: wait for the delete's reply.
	var xs []ngExchange
	done := waitFor(webrtcStep, func() bool {
		xs = rec.exchanges(t, ng)
		for _, x := range xs {
			if x.command() == "delete" && x.rep != nil {
				return true
			}
		}
		return false
	})
	if !done {
		t.Fatalf("hlas sent rtpengine no delete answered for the call (requests since the call began: %d)", len(xs))
	}
	var offer, answer, del *ngExchange
	calls := map[string]bool{}
	for i := range xs {
		x := &xs[i]
		calls[x.callID()] = true
		switch x.command() {
		case "offer":
			offer = x
		case "answer":
			answer = x
		case "delete":
			del = x
		}
		if res, _ := x.rep["result"].(string); x.rep == nil || res != "ok" {
			t.Errorf("rtpengine's reply to the %s: %v, want result ok", x.command(), x.rep)
		}
	}
	if len(calls) != 1 || offer == nil || answer == nil {
		t.Fatalf("the NG requests of the call are for %d Call-IDs, offer %v, answer %v; want an offer and an answer of one call",
			len(calls), offer != nil, answer != nil)
	}

	// Which SDP went to whom: an offer's reply to the callee, an
	// answer's to the caller.
	toBrowser, toBob := answer.replySDP(), offer.replySDP()
	if !c.aliceCalls {
		toBrowser, toBob = toBob, toBrowser
	}
	for _, want := range []string{"UDP/TLS/RTP/SAVPF", "a=fingerprint:", "a=setup:", "a=ice-ufrag:", "a=candidate:", "a=rtcp-mux", "a=mid:"} {
		if !strings.Contains(toBrowser, want) {
			t.Errorf("the SDP rtpengine wrote for the browser lacks %q:\n%s", want, toBrowser)
		}
	}
	if strings.Contains(toBrowser, "a=crypto:") {
		t.Errorf("the SDP rtpengine wrote for the browser offers SDES (a=crypto):\n%s", toBrowser)
	}
	if !strings.Contains(toBob, " RTP/AVP ") {
		t.Errorf("the SDP rtpengine wrote for bob is not RTP/AVP:\n%s", toBob)
	}
	for _, bad := range []string{"a=fingerprint:", "a=ice-ufrag:", "a=candidate:", "a=crypto:"} {
		if strings.Contains(toBob, bad) {
			t.Errorf("the SDP rtpengine wrote for bob has %q:\n%s", bad, toBob)
		}
	}

	// The delete's statistics: a party per tag, its media's protocol, and
	// the RTP packets rtpengine received from it (the first stream).
	got := map[string]int64{}
	tags, _ := del.rep["tags"].(map[string]any)
	for _, v := range tags {
		party, _ := v.(map[string]any)
		medias, _ := party["medias"].([]any)
		for _, m := range medias {
			md, _ := m.(map[string]any)
			proto, _ := md["protocol"].(string)
			streams, _ := md["streams"].([]any)
			if len(streams) == 0 {
				continue
			}
			rtp, _ := streams[0].(map[string]any)
			stats, _ := rtp["stats"].(map[string]any)
			n, _ := stats["packets"].(int64)
			got[proto] += n
		}
	}
	if len(got) != 2 || got["UDP/TLS/RTP/SAVPF"] <= webrtcMinPackets || got["RTP/AVP"] <= webrtcMinPackets {
		t.Errorf("rtpengine received RTP packets by protocol %v; want more than %d from the browser (UDP/TLS/RTP/SAVPF) and from bob (RTP/AVP)",
			got, webrtcMinPackets)
	} else {
		t.Logf("rtpengine relayed %d packets from the browser, %d from bob", got["UDP/TLS/RTP/SAVPF"], got["RTP/AVP"])
	}
}

// TestWebRTCJsSIPRtpengine: TestWebRTCJsSIP's two calls (alice in the
// browser calls bob and hangs up, then bob calls her and hangs up) with
// the real rtpengine as hlas's media engine. Audio flows both ways in
// both calls, through rtpengine.
func TestWebRTCJsSIPRtpengine(t *testing.T) {
	const iface = "127.0.0.1"
	d := startRtpengine(t)
	rec := newNGRecorder(t, d.ng)
	t.Cleanup(func() {
		if t.Failed() {
			rec.logNG(t)
		}
	})
	l := newWebRTCLabWith(t, fmt.Sprintf(`{ relay: auto, engine: "rtpengine:udp:%s" }`, rec.addr()))
	b := startWebRTCBrowser(t, l, "jssip", "alice")
	b.wait(t, "registered", 1)
	for _, c := range []webrtcCall{
		{name: "alice calls bob", aliceCalls: true, aliceHangs: true},
		{name: "bob calls alice"},
	} {
		if !t.Run(c.name, func(t *testing.T) {
			since, ng := b.mark(), rec.count()
			c.run(t, l, b)
			rtpengineCall(t, c, b, since, rec, ng, d, iface)
		}) {
			break // the page may still be in the failed call
		}
	}
}
