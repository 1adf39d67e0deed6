//go:build interop

package interop

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The media relay (issue 12) through real NATs: `hlas serve` on a public
// segment (198.51.100.0/24, TEST-NET-2: public as far as the relay can
// tell), two baresip phones on private LANs behind Linux NAT routers (one
// of them symmetric: --random-fully), and for the IPv6 tests a third
// phone on an IPv6 LAN. Everything runs in network namespaces the test
// creates (netns_test.go), so it needs root.
//
// Audio is measured per packet at the phones (netns_phone_test.go): each
// phone sends 50 RTP packets a second, and a packet socket on its
// interface stamps each one it sends and each one reaching its RTP ports. Without a relay nothing can arrive: each phone offers
// its private address, which the other cannot reach, so relay: never is
// the negative control that proves the measurement can fail.
//
// Test names start with NATMedia.

// The lab's addresses.
const (
	natHlasV4   = "198.51.100.1"
	natHlasV6   = "2001:db8:1::1"
	natAliceWAN = "198.51.100.11/24" // alice's NAT, port-preserving masquerade
	natBobWAN   = "198.51.100.12/24" // bob's NAT, symmetric (--random-fully)
	natAlice    = "192.168.1.10"
	natBob      = "192.168.2.10"
	natCarolGW  = "2001:db8:1::6" // carol's IPv6 router on the public segment
	natCarol    = "2001:db8:6::10"
	natCarolLAN = "2001:db8:6::/64"
	natDaveGW   = "2001:db8:1::7" // dave's IPv6 router
	natDave     = "2001:db8:7::10"
	natDaveLAN  = "2001:db8:7::/64"
)

const (
	// natTalk is how long a call lasts once established.
	natTalk = 6 * time.Second
	// natSettle is how long after a change (answer, re-INVITE) audio may
	// take to flow: the relay learns each phone's public address from
	// its first packets.
	natSettle = 500 * time.Millisecond
	// natSignalTimeout bounds each signalling step (call set up, BYE).
	natSignalTimeout = 10 * time.Second
	// natMinShare is the share of the expected packets that must arrive.
	natMinShare = 0.8
)

// natScene is one lab with hlas and its phones.
type natScene struct {
	lab    *netLab
	hlasNS netns
	hlas   *server
	data   string // hlas's data directory, for `hlas cdr`
	alice  *phone // IPv4, behind a NAT
	bob    *phone // IPv4, behind a symmetric NAT
	carol  *phone // IPv6, routed; nil unless asked for
	dave   *phone // IPv6, routed, another LAN; nil unless asked for

	// aliceNAT and bobNAT are their NAT routers.
	aliceNAT, bobNAT netns
}

// natSceneConfig sets up a scene.
type natSceneConfig struct {
	// media is the value of hlas's media section, as YAML flow
	// ("{ relay: never }"); empty writes no media section (defaults).
	media string
	// carol adds the IPv6 phone, and hlas listens on IPv6 too; dave a
	// second one (with carol).
	carol, dave bool
	// rtpengine starts rtpengine beside hlas, in its namespace, with its
	// NG socket on 127.0.0.1:2223 (media's engine names it), and these
	// extra arguments.
	rtpengine     bool
	rtpengineArgs []string
}

// newNATScene builds the lab, starts hlas in it and registers the phones.
func newNATScene(t *testing.T, cfg natSceneConfig) *natScene {
	t.Helper()
	s := &natScene{lab: newNetLab(t)}
	l := s.lab
	s.hlasNS = l.newNS("hlas")
	hlasAddrs := []string{natHlasV4 + "/24"}
	if cfg.carol {
		hlasAddrs = append(hlasAddrs, natHlasV6+"/64")
	}
	l.plug(s.hlasNS, "eth0", hlasAddrs...)
	var aliceNS netns
	s.aliceNAT, aliceNS = l.natLAN("alice", natAliceWAN, "192.168.1.1/24", natAlice+"/24", false)
	var bobNS netns
	s.bobNAT, bobNS = l.natLAN("bob", natBobWAN, "192.168.2.1/24", natBob+"/24", true)
	var carolNS, daveNS netns
	if cfg.carol {
		_, carolNS = l.v6LAN("carol", natCarolGW+"/64", "2001:db8:6::1/64", natCarol+"/64")
		s.hlasNS.ip(t, "-6", "route", "add", natCarolLAN, "via", natCarolGW)
	}
	if cfg.dave {
		_, daveNS = l.v6LAN("dave", natDaveGW+"/64", "2001:db8:7::1/64", natDave+"/64")
		s.hlasNS.ip(t, "-6", "route", "add", natDaveLAN, "via", natDaveGW)
	}

	if cfg.rtpengine {
		startRtpengineIn(t, &s.hlasNS, natHlasV4, "127.0.0.1:2223", cfg.rtpengineArgs...)
	}
	yaml := "domain: [ example.test ]\nauth: { open_domains: [ \"*\" ] }\n"
	if cfg.media != "" {
		yaml += "media: " + cfg.media + "\n"
	}
	listen := []string{"udp:" + net.JoinHostPort(natHlasV4, "5060")}
	if cfg.carol {
		listen = append(listen, "udp:"+net.JoinHostPort(natHlasV6, "5060"))
	}
	s.hlas, s.data = startNSServer(t, s.hlasNS, yaml, listen, "--metrics-listen", natMetrics)

	hlas4 := net.JoinHostPort(natHlasV4, "5060")
	s.alice = startPhone(t, phoneConfig{name: "alice", ns: aliceNS, addr: natAlice, server: hlas4})
	s.bob = startPhone(t, phoneConfig{name: "bob", ns: bobNS, addr: natBob, server: hlas4})
	if cfg.carol {
		s.carol = startPhone(t, phoneConfig{name: "carol", ns: carolNS, addr: natCarol,
			server: net.JoinHostPort(natHlasV6, "5060"), ipv6: true})
	}
	if cfg.dave {
		s.dave = startPhone(t, phoneConfig{name: "dave", ns: daveNS, addr: natDave,
			server: net.JoinHostPort(natHlasV6, "5060"), ipv6: true})
	}
	return s
}

// startNSServer runs `hlas serve` in ns with the YAML configuration and
// listeners given, as startServerWith does on loopback (readiness checked
// from inside ns, a clean exit required after SIGTERM). It returns the
// server and its data directory.
func startNSServer(t *testing.T, ns netns, yaml string, listen []string, args ...string) (*server, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "hlas.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("hlas config:\n%s", yaml)
	data := filepath.Join(dir, "data")
	s := startServerWith(t, serverConfig{
		ns:     &ns,
		listen: listen,
		// No name is looked up; the namespace's loopback answers at once.
		dns:  "127.0.0.1",
		args: append([]string{"--config", path, "--data", data}, args...),
	})
	return s, data
}

// natMetrics is where hlas serves its metrics, on the loopback of its
// own namespace.
const natMetrics = "127.0.0.1:9464"

// metrics scrapes hlas's metrics from inside its namespace.
func (s *natScene) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	return parseMetrics(strings.NewReader(s.hlasNS.run(t, "curl", "-sS", "--max-time", "5", "http://"+natMetrics+"/metrics")))
}

// wantKernelPath fails the test unless the relay's kernel path carried
// at least min of the packets it forwarded (latched RTP between two
// IPv4 parties), or, with want false, unless it carried none.
func (s *natScene) wantKernelPath(t *testing.T, want bool, min float64) {
	t.Helper()
	m := s.metrics(t)
	all, kernel := m["hlas_media_packets_forwarded_total"], m["hlas_media_kernel_packets_forwarded_total"]
	switch {
	case want && kernel < min:
		t.Errorf("the kernel path forwarded %v of %v packets, want at least %v", kernel, all, min)
	case !want && kernel != 0:
		t.Errorf("the kernel path forwarded %v of %v packets, want none", kernel, all)
	default:
		t.Logf("the relay forwarded %v packets, %v of them in the kernel", all, kernel)
	}
}

// natOf returns the NAT router of alice or bob.
func (s *natScene) natOf(p *phone) netns {
	if p == s.alice {
		return s.aliceNAT
	}
	return s.bobNAT
}

// addrOf returns the private address of alice or bob.
func (s *natScene) addrOf(p *phone) string {
	if p == s.alice {
		return natAlice
	}
	return natBob
}

// hlasTail is the end of hlas's log, for failure messages.
func (s *natScene) hlasTail() string {
	return s.hlas.output.Tail(3000)
}

// dial makes caller call callee (who answers automatically) and waits
// until both see the call established; it returns when the caller did.
// A call that fails ends the test at once, with the reason.
func (s *natScene) dial(t *testing.T, caller, callee *phone) time.Time {
	t.Helper()
	nCaller := len(caller.eventsOf("CALL_ESTABLISHED")) + 1
	nCallee := len(callee.eventsOf("CALL_ESTABLISHED")) + 1
	closed := len(caller.eventsOf("CALL_CLOSED"))
	start := caller.command(t, "dial", "sip:"+callee.user)
	var est phoneEvent
	waitFor(natSignalTimeout, func() bool {
		var ok bool
		est, ok = caller.waitEvent("CALL_ESTABLISHED", nCaller, 0)
		return ok || len(caller.eventsOf("CALL_CLOSED")) > closed
	})
	if est.At.IsZero() {
		t.Fatalf("%s's call to %s not established within %v; %s's events:\n%s%s's events:\n%s\nhlas log tail:\n%s",
			caller.name, callee.name, natSignalTimeout, caller.name, caller.eventLog(start), callee.name,
			callee.eventLog(start), s.hlasTail())
	}
	if _, ok := callee.waitEvent("CALL_ESTABLISHED", nCallee, natSignalTimeout); !ok {
		t.Fatalf("%s did not see %s's call established; its events:\n%s\nhlas log tail:\n%s",
			callee.name, caller.name, callee.eventLog(start), s.hlasTail())
	}
	t.Logf("%s -> %s: established %.2fs after the dial", caller.name, callee.name, est.At.Sub(start).Seconds())
	return est.At
}

// hangup makes p hang up and requires that other sees the call end by
// its BYE; it returns when p hung up.
func (s *natScene) hangup(t *testing.T, p, other *phone) time.Time {
	t.Helper()
	n := len(other.eventsOf("CALL_CLOSED")) + 1
	at := p.command(t, "hangup", "")
	ev, ok := other.waitEvent("CALL_CLOSED", n, natSignalTimeout)
	if !ok {
		t.Errorf("%s hung up but %s did not see the call end within %v; its events:\n%s\nhlas log tail:\n%s",
			p.name, other.name, natSignalTimeout, other.eventLog(at), s.hlasTail())
	} else if !strings.Contains(ev.Param, "reset by peer") {
		t.Errorf("%s hung up; %s's call ended with %q, not by the BYE", p.name, other.name, ev.Param)
	}
	return at
}

// wantAudio fails the test unless to received from's audio all along
// [from, until]: at least natMinShare of the packets at rtpRate, and at
// least half the rate in every whole second, the last one included.
func (s *natScene) wantAudio(t *testing.T, what string, src, dst *phone, from, until time.Time) {
	t.Helper()
	got := dst.rtpBetween(from, until)
	sent := src.rtpBetween(from, until)
	expected := uint64(got.Span.Seconds() * rtpRate)
	need := uint64(float64(expected) * natMinShare)
	per := dst.rtpPerSecond(from, until)
	var thin []int
	for i, n := range per {
		if n < rtpRate/2 {
			thin = append(thin, i+1)
		}
	}
	if got.BadSum != 0 {
		t.Errorf("%s: %s received %d RTP packets with a wrong UDP checksum\nhlas log tail:\n%s", what, dst.name, got.BadSum, s.hlasTail())
	}
	if got.In < need || len(thin) > 0 || len(per) == 0 {
		t.Errorf("%s: %s received %d RTP packets from %s in %.1fs; want >= %d (%.0f%% of %d at %d/s), "+
			"and >= %d in each second (short: seconds %v); %s sent %d meanwhile; received per second: %v\nhlas log tail:\n%s",
			what, dst.name, got.In, src.name, got.Span.Seconds(), need, natMinShare*100, expected, rtpRate,
			rtpRate/2, thin, src.name, sent.Out, per, s.hlasTail())
		return
	}
	t.Logf("%s: %s received %d of %d RTP packets from %s (%s sent %d) in %.1fs; per second %v",
		what, dst.name, got.In, expected, src.name, src.name, sent.Out, got.Span.Seconds(), per)
}

// wantSilence fails the test if dst received any audio in [from, until],
// and reports what src sent meanwhile. It returns what src sent.
func (s *natScene) wantSilence(t *testing.T, what string, src, dst *phone, from, until time.Time) uint64 {
	t.Helper()
	got := dst.rtpBetween(from, until)
	sent := src.rtpBetween(from, until)
	if got.In != 0 {
		t.Errorf("%s: %s received %d RTP packets in %.1fs, want none (%s sent %d); received per second: %v\nhlas log tail:\n%s",
			what, dst.name, got.In, got.Span.Seconds(), src.name, sent.Out, dst.rtpPerSecond(from, until), s.hlasTail())
	} else {
		t.Logf("%s: %s received nothing in %.1fs (%s sent %d)", what, dst.name, got.Span.Seconds(), src.name, sent.Out)
	}
	return sent.Out
}

// call makes caller call callee, lets them talk for natTalk, hangs up and
// requires audio both ways from natSettle after the answer to the hangup.
func (s *natScene) call(t *testing.T, caller, callee *phone) {
	t.Helper()
	est := s.dial(t, caller, callee)
	time.Sleep(natTalk)
	end := s.hangup(t, caller, callee)
	s.wantAudio(t, caller.name+" to "+callee.name, caller, callee, est.Add(natSettle), end)
	s.wantAudio(t, callee.name+" to "+caller.name, callee, caller, est.Add(natSettle), end)
}

// TestNATMediaRelay: alice (behind a NAT) calls bob (behind a symmetric
// NAT) through hlas; with the relay, audio flows both ways for the whole
// call. The default (no media section) must behave as auto.
func TestNATMediaRelay(t *testing.T) {
	// Not parallel with the rest of the suite: audio is counted per second,
	// and a machine starved by -race and -parallel 8 would drop it.
	// The kernel path (on by default, as root) carries the latched RTP:
	// all but the first packets of each phone, and RTCP.
	for _, c := range []struct {
		name, media string
		kernel      bool
	}{
		{"auto", "{ relay: auto }", true},
		{"default", "", true},
		{"always", "{ relay: always }", true},
		{"userspace", "{ relay: always, kernel: off }", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newNATScene(t, natSceneConfig{media: c.media})
			s.call(t, s.alice, s.bob)
			s.wantKernelPath(t, c.kernel, 2*natTalk.Seconds()*rtpRate*natMinShare)
		})
	}
}

// TestNATMediaRTPEngine: the same call with rtpengine as the media engine
// (media.engine: rtpengine:udp:...), the operator's existing relay.
func TestNATMediaRTPEngine(t *testing.T) {
	s := newNATScene(t, natSceneConfig{media: `{ engine: "rtpengine:udp:127.0.0.1:2223" }`, rtpengine: true})
	s.call(t, s.alice, s.bob)
}

// TestNATMediaRelayNever is the negative control: without the relay the
// call is set up and both phones send audio all along, but each sends it
// to the other's private address, and none arrives.
func TestNATMediaRelayNever(t *testing.T) {
	// Not parallel with the rest of the suite: audio is counted per second,
	// and a machine starved by -race and -parallel 8 would drop it.
	s := newNATScene(t, natSceneConfig{media: "{ relay: never }"})
	est := s.dial(t, s.alice, s.bob)
	time.Sleep(natTalk)
	end := s.hangup(t, s.alice, s.bob)
	from := est.Add(natSettle)
	expected := uint64(end.Sub(from).Seconds() * rtpRate * natMinShare)
	for _, d := range []struct {
		what     string
		src, dst *phone
	}{
		{"alice to bob", s.alice, s.bob},
		{"bob to alice", s.bob, s.alice},
	} {
		// The phones did send: the silence is the network's, not theirs.
		if sent := s.wantSilence(t, d.what, d.src, d.dst, from, end); sent < expected {
			t.Errorf("%s: %s sent only %d RTP packets, want >= %d: the negative control needs audio sent",
				d.what, d.src.name, sent, expected)
		}
	}
}

// TestNATMediaIPv6: carol is on IPv6 only, alice on IPv4 behind a NAT;
// the relay bridges the two families, in both directions of calling.
func TestNATMediaIPv6(t *testing.T) {
	// Not parallel with the rest of the suite: audio is counted per second,
	// and a machine starved by -race and -parallel 8 would drop it.
	s := newNATScene(t, natSceneConfig{carol: true})
	for _, c := range []struct {
		name           string
		caller, callee *phone
	}{
		{"alice calls carol", s.alice, s.carol},
		{"carol calls alice", s.carol, s.alice},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.call(t, c.caller, c.callee)
		})
	}
}

// TestNATMediaHold: alice puts bob on hold (a re-INVITE with sendonly,
// answered recvonly; baresip then sends nothing either way) and resumes;
// the relay follows both re-INVITEs, so audio stops while held and
// TestNATMediaIPv6Kernel: carol and dave, both on IPv6 LANs, call each
// other through the relay (always: neither is behind NAT); the kernel
// path carries their audio as it does IPv4's, with checksums the phones'
// kernels verify.
func TestNATMediaIPv6Kernel(t *testing.T) {
	s := newNATScene(t, natSceneConfig{media: "{ relay: always }", carol: true, dave: true})
	s.call(t, s.carol, s.dave)
	s.wantKernelPath(t, true, 2*natTalk.Seconds()*rtpRate*natMinShare)
}

// flows again after.
func TestNATMediaHold(t *testing.T) {
	// Not parallel with the rest of the suite: audio is counted per second,
	// and a machine starved by -race and -parallel 8 would drop it.
	s := newNATScene(t, natSceneConfig{})
	// The answers alice got so far; each re-INVITE adds one.
	answers := func() int {
		n := 0
		for _, e := range s.alice.eventsOf("CALL_REMOTE_SDP") {
			if e.Param == "answer" {
				n++
			}
		}
		return n
	}
	waitAnswer := func(what string, n int, since time.Time) time.Time {
		t.Helper()
		var at time.Time
		if !waitFor(natSignalTimeout, func() bool {
			for _, e := range s.alice.eventsOf("CALL_REMOTE_SDP") {
				if e.Param == "answer" {
					if n--; n == 0 {
						at = e.At
						return true
					}
				}
			}
			return false
		}) {
			t.Fatalf("%s: no answer to alice's re-INVITE within %v; her events:\n%s\nbob's:\n%s\nhlas log tail:\n%s",
				what, natSignalTimeout, s.alice.eventLog(since), s.bob.eventLog(since), s.hlasTail())
		}
		return at
	}

	est := s.dial(t, s.alice, s.bob)
	time.Sleep(3 * time.Second)
	n := answers()
	hold := s.alice.command(t, "hold", "")
	s.wantAudio(t, "before hold, alice to bob", s.alice, s.bob, est.Add(natSettle), hold)
	s.wantAudio(t, "before hold, bob to alice", s.bob, s.alice, est.Add(natSettle), hold)
	held := waitAnswer("hold", n+1, est)
	time.Sleep(3 * time.Second)
	resume := s.alice.command(t, "resume", "")
	s.wantSilence(t, "on hold, alice to bob", s.alice, s.bob, held.Add(natSettle), resume)
	s.wantSilence(t, "on hold, bob to alice", s.bob, s.alice, held.Add(natSettle), resume)
	resumed := waitAnswer("resume", n+2, est)
	time.Sleep(3 * time.Second)
	end := s.hangup(t, s.alice, s.bob)
	s.wantAudio(t, "resumed, alice to bob", s.alice, s.bob, resumed.Add(natSettle), end)
	s.wantAudio(t, "resumed, bob to alice", s.bob, s.alice, resumed.Add(natSettle), end)
}

// TestNATMediaTimeout: RTP stops reaching the relay (the NAT routers
// drop it; signalling still gets through). After media.timeout without
// audio, hlas ends the call with a BYE to both phones, and the call's
// record says media-timeout. Two cases: only bob goes silent (a phone
// that died while the other still talks), and both do.
func TestNATMediaTimeout(t *testing.T) {
	// Not parallel with the rest of the suite: audio is counted per second,
	// and a machine starved by -race and -parallel 8 would drop it.
	const timeout = 3 * time.Second
	builtin := natSceneConfig{media: fmt.Sprintf("{ timeout: %v }", timeout)}
	// rtpengine ends the call at its own --timeout; hlas finds out by
	// asking about it (rtpengine_poll) and ends it the same way.
	withRtpengine := natSceneConfig{
		media:     `{ engine: "rtpengine:udp:127.0.0.1:2223", rtpengine_poll: 1s }`,
		rtpengine: true, rtpengineArgs: []string{fmt.Sprintf("--timeout=%d", int(timeout.Seconds()))},
	}
	for _, c := range []struct {
		name   string
		scene  natSceneConfig
		silent func(s *natScene) []*phone
	}{
		{"bob silent", builtin, func(s *natScene) []*phone { return []*phone{s.bob} }},
		{"both silent", builtin, func(s *natScene) []*phone { return []*phone{s.alice, s.bob} }},
		{"both silent, rtpengine", withRtpengine, func(s *natScene) []*phone { return []*phone{s.alice, s.bob} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newNATScene(t, c.scene)
			est := s.dial(t, s.alice, s.bob)
			time.Sleep(2 * time.Second)
			// The silent phones' NAT routers drop what they send from
			// their RTP ports.
			drop := time.Now()
			var who []string
			for _, p := range c.silent(s) {
				s.natOf(p).run(t, "iptables", "-I", "FORWARD", "-s", s.addrOf(p), "-p", "udp", "--sport", phoneRTPPorts, "-j", "DROP")
				who = append(who, p.name)
			}
			stopped := strings.Join(who, " and ") + "'s RTP stopped"
			s.wantAudio(t, "before the drop, alice to bob", s.alice, s.bob, est.Add(natSettle), drop)
			s.wantAudio(t, "before the drop, bob to alice", s.bob, s.alice, est.Add(natSettle), drop)

			// Neither phone hangs up: each must see hlas's BYE.
			limit := timeout + 6*time.Second
			// Not before the timeout, less a second of slack (the relay's
			// sweep); rtpengine keeps its packet times in whole seconds.
			early := timeout - time.Second
			if c.scene.rtpengine {
				early = timeout - 2*time.Second
			}
			for _, p := range []*phone{s.alice, s.bob} {
				ev, ok := p.waitEvent("CALL_CLOSED", 1, time.Until(drop.Add(limit)))
				switch {
				case !ok:
					t.Errorf("%s: call still up %v after %s (media timeout %v); events:\n%s\nhlas log tail:\n%s",
						p.name, limit, stopped, timeout, p.eventLog(est), s.hlasTail())
				case !strings.Contains(ev.Param, "reset by peer"):
					t.Errorf("%s: call ended with %q, not by a BYE", p.name, ev.Param)
				case ev.At.Sub(drop) < early:
					t.Errorf("%s: call ended %.1fs after %s, before the media timeout (%v)",
						p.name, ev.At.Sub(drop).Seconds(), stopped, timeout)
				default:
					t.Logf("%s: call ended by a BYE %.1fs after %s", p.name, ev.At.Sub(drop).Seconds(), stopped)
				}
			}
			if t.Failed() {
				return // the call may still be up: no record yet
			}

			var recs []map[string]any
			waitFor(5*time.Second, func() bool {
				recs = cdrExport(t, s.data)
				return len(recs) == 1 && recs[0]["end_reason"] != nil && recs[0]["end_reason"] != ""
			})
			if len(recs) != 1 {
				t.Fatalf("%d call records, want 1: %v", len(recs), recs)
			}
			if r := recs[0]; r["status"] != "answered" || r["end_reason"] != "media-timeout" {
				t.Errorf("record %v, want status answered and end_reason media-timeout", r)
			} else {
				t.Logf("record: %v", r)
			}
		})
	}
}

// sippPcapDir holds the RTP captures of the sip-tester package.
const sippPcapDir = "/usr/share/sip-tester"

// TestNATMediaSippLoad: 200 calls at once through the relay. sipp calls
// from behind a symmetric NAT (testdata/nat/uac_pcap.xml: each call
// plays sip-tester's g711a.pcap from its own port) to a sipp on the
// public segment that answers (testdata/proxy_uas.xml) and echoes every
// RTP packet to its sender (-rtp_echo). No call may fail; the callee must
// get the audio from the relay, never straight from the caller's NAT, and
// the caller must get the echo back.
func TestNATMediaSippLoad(t *testing.T) {
	// Not parallel with the rest of the suite: sipp playing RTP for 200
	// calls trips its own overload watchdog on a starved machine.
	const (
		calls    = 200
		rate     = 50 // calls a second: all 200 are up together for seconds
		uasAddr  = "198.51.100.20"
		uacAddr  = "192.168.3.10"
		uasMedia = "6000"        // the callee's one RTP port, echoing
		uacMedia = "10000:19999" // the caller's per-call ports ([auto_media_port] from -mp 10000)
	)
	pcap := filepath.Join(sippPcapDir, "g711a.pcap")
	perCall := pcapPackets(t, pcap)
	l := newNetLab(t)
	hlasNS := l.newNS("hlas")
	l.plug(hlasNS, "eth0", natHlasV4+"/24")
	uasNS := l.newNS("uas")
	l.plug(uasNS, "eth0", uasAddr+"/24")
	_, uacNS := l.natLAN("uac", "198.51.100.13/24", "192.168.3.1/24", uacAddr+"/24", true)

	uasNS.countRule(t, "iptables", "INPUT", "rtp-from-relay", "-p", "udp", "-s", natHlasV4, "--dport", uasMedia)
	uasNS.countRule(t, "iptables", "INPUT", "rtp-not-from-relay", "-p", "udp", "!", "-s", natHlasV4, "--dport", uasMedia)
	uacNS.countRule(t, "iptables", "OUTPUT", "rtp-sent", "-p", "udp", "--sport", uacMedia)
	uacNS.countRule(t, "iptables", "INPUT", "rtp-echoed", "-p", "udp", "--dport", uacMedia)
	// Nothing listens on the caller's media ports (sipp plays through a
	// raw socket): drop the echo there instead of answering it with ICMP.
	uacNS.run(t, "iptables", "-A", "INPUT", "-p", "udp", "--dport", uacMedia, "-j", "DROP")

	yaml := "domain: [ example.test ]\nauth: { open_domains: [ \"*\" ] }\nmedia: { relay: always }\n" +
		"routing:\n  locations:\n    bob@example.test: [ \"sip:bob@" + uasAddr + ":5060\" ]\n"
	s, _ := startNSServer(t, hlasNS, yaml, []string{"udp:" + net.JoinHostPort(natHlasV4, "5060")})

	uas := startNSSipp(t, uasNS, "-sf", "proxy_uas.xml", "-i", uasAddr, "-p", "5060", "-mi", uasAddr, "-mp", uasMedia,
		"-rtp_echo", "-m", fmt.Sprint(calls), "-timeout", "180s")
	if !waitFor(readyTimeout, func() bool {
		out, _ := uasNS.command("ss", "-Hlun", "sport", "= :5060").Output()
		return len(strings.TrimSpace(string(out))) > 0
	}) {
		t.Fatalf("sipp uas not listening:\n%s", uas.out.String())
	}
	stat := filepath.Join(t.TempDir(), "uac_stat.csv")
	uac := startNSSipp(t, uacNS, "-sf", "nat/uac_pcap.xml", "-s", "bob", "-i", uacAddr, "-p", "5060", "-mp", "10000",
		"-m", fmt.Sprint(calls), "-l", fmt.Sprint(calls), "-r", fmt.Sprint(rate),
		"-timeout", "180s", "-timeout_error", "-trace_stat", "-stf", stat,
		net.JoinHostPort(natHlasV4, "5060"))
	for _, p := range []*nsSipp{uac, uas} {
		select {
		case <-p.done:
		case <-time.After(3 * time.Minute):
			t.Fatalf("sipp %s did not end", p.role)
		}
	}

	stats, statErr := readSippStats(stat)
	if uac.err != nil || statErr != nil || stats["SuccessfulCall(C)"] != fmt.Sprint(calls) || stats["FailedCall(C)"] != "0" {
		t.Errorf("sipp uac: exit %v; %d calls wanted, successful=%s failed=%s (stats: %v)\nsipp output:\n%s\nhlas log tail:\n%s",
			uac.err, calls, stats["SuccessfulCall(C)"], stats["FailedCall(C)"], statErr, tail(uac.out.String(), 4000), s.output.Tail(3000))
		uac.logErrors(t)
	}
	if uas.err != nil {
		t.Errorf("sipp uas: exit %v\n%s", uas.err, tail(uas.out.String(), 4000))
		uas.logErrors(t)
	}

	expected := uint64(calls * perCall)
	need := uint64(float64(expected) * natMinShare)
	sent := uacNS.readCount(t, "iptables", "rtp-sent")
	fromRelay := uasNS.readCount(t, "iptables", "rtp-from-relay")
	direct := uasNS.readCount(t, "iptables", "rtp-not-from-relay")
	echoed := uacNS.readCount(t, "iptables", "rtp-echoed")
	t.Logf("%d calls of %d RTP packets: caller sent %d; callee got %d from the relay and %d from elsewhere; caller got %d back",
		calls, perCall, sent, fromRelay, direct, echoed)
	if sent < need {
		t.Errorf("the caller sent %d RTP packets, want >= %d (%.0f%% of %d calls x %d): the load did not happen",
			sent, need, natMinShare*100, calls, perCall)
	}
	if fromRelay < need || direct != 0 {
		t.Errorf("the callee received %d RTP packets from the relay (want >= %d of %d sent) and %d from elsewhere (want 0)\nhlas log tail:\n%s",
			fromRelay, need, sent, direct, s.output.Tail(3000))
	}
	if echoed < need {
		t.Errorf("the caller got %d echoed RTP packets back through the relay, want >= %d (callee received %d)\nhlas log tail:\n%s",
			echoed, need, fromRelay, s.output.Tail(3000))
	}
}

// pcapPackets counts the packets of a pcap file.
func pcapPackets(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: the RTP captures come with the Debian package sip-tester", err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian pcap file", path)
	}
	n := 0
	for off := 24; off+16 <= len(b); n++ {
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	return n
}

// nsSipp is one sipp running in a namespace.
type nsSipp struct {
	role string
	dir  string
	cmd  *exec.Cmd
	out  *outputBuffer
	done chan struct{}
	err  error // cmd.Wait's, valid after done
}

// startNSSipp runs sipp in ns with args (a -sf scenario path relative to
// testdata), in a directory of its own holding links to the RTP captures
// of sip-tester, and kills it if it still runs when the test ends.
func startNSSipp(t *testing.T, ns netns, args ...string) *nsSipp {
	t.Helper()
	p := &nsSipp{dir: t.TempDir(), out: &outputBuffer{limit: 16 << 20}, done: make(chan struct{})}
	for i, a := range args {
		if i > 0 && args[i-1] == "-sf" {
			abs, err := filepath.Abs(filepath.Join("testdata", a))
			if err != nil {
				t.Fatal(err)
			}
			args[i] = abs
			p.role = strings.TrimSuffix(filepath.Base(a), ".xml")
		}
	}
	pcaps, _ := filepath.Glob(filepath.Join(sippPcapDir, "*.pcap"))
	for _, f := range pcaps {
		if err := os.Symlink(f, filepath.Join(p.dir, filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	full := append([]string{"sipp", "-nostdin", "-trace_err", "-error_file", filepath.Join(p.dir, "errors.log")}, args...)
	p.cmd = ns.command(full...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started sipp (pid %d) in %s: %s", p.cmd.Process.Pid, ns.name, strings.Join(full[1:], " "))
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// logErrors shows the messages sipp did not expect.
func (p *nsSipp) logErrors(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(p.dir, "errors.log")); err == nil {
		t.Logf("sipp %s unexpected messages:\n%s", p.role, tail(string(b), 6000))
	}
}
