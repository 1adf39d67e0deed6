package security

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestDetector(t *testing.T, clk *fakeClock, cfg DetectConfig, trusted func(netip.Addr) bool) (*Detector, *Bans, *recorder) {
	t.Helper()
	bans, rec := newTestBans(clk, 0)
	d, err := NewDetector(cfg, bans, trusted, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return d, bans, rec
}

func TestDetectorUserAgent(t *testing.T) {
	clk := newClock()
	d, bans, rec := newTestDetector(t, clk, DetectConfig{}, TrustFunc([]netip.Prefix{prefix("127.0.0.0/8")}))
	for i, tc := range []struct {
		ua   string
		want bool
	}{
		{"friendly-scanner", true},
		{"Friendly-Scanner 1.0", true},
		{"sipvicious", true},
		{"SIPVicious/0.3.4", true},
		{"VaxSIPUserAgent/3.1", true},
		{"sipcli/v1.8", true},
		{"x smap y", true},
		{"Linphone/5.2 (belle-sip/5.2)", false},
		{"sipsak 0.9.8", false},
		{"Yealink SIP-T46S 66.86.0.15", false},
		{"baresip v3.10.0 (x86_64/linux)", false},
		{"friendly-scanne", false},
		{"", false},
	} {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		if got := d.UserAgent(ip, tc.ua); got != tc.want {
			t.Errorf("UserAgent(%q) = %v, want %v", tc.ua, got, tc.want)
		}
		if bans.Banned(ip) != tc.want {
			t.Errorf("%q: banned %v", tc.ua, bans.Banned(ip))
		}
	}
	if r := rec.added[0].Reason; r != `scanner: user-agent "friendly-scanner"` || !rec.added[0].Expires.Equal(clk.Now().Add(DefaultDetectBanTime)) {
		t.Fatalf("ban = %+v", rec.added[0])
	}
	if d.UserAgent(addr("127.0.0.1"), "friendly-scanner") || bans.Banned(addr("127.0.0.1")) {
		t.Fatal("trusted source banned")
	}
	if d.Stats().BansUserAgent != 7 {
		t.Fatalf("stats = %+v", d.Stats())
	}

	// A list of one's own, and an explicit empty list.
	d2, _, _ := newTestDetector(t, clk, DetectConfig{UserAgents: []string{"EvilCorp"}}, nil)
	if !d2.UserAgent(addr("192.0.2.1"), "x-evilcorp-x") || d2.UserAgent(addr("192.0.2.2"), "friendly-scanner") {
		t.Fatal("own list not used")
	}
	d3, _, _ := newTestDetector(t, clk, DetectConfig{UserAgents: []string{}}, nil)
	if d3.UserAgent(addr("192.0.2.1"), "friendly-scanner") {
		t.Fatal("empty list matched")
	}
}

func TestUAMatcherAgreesWithContains(t *testing.T) {
	m := newUAMatcher([]string{"abc", "ABD", "b", "zzzz", "ß"})
	for _, s := range []string{"", "a", "xxabc", "XXABDX", "bbb", "zzz", "zzzzz", "AbC", "aXbc", "straße", "STRAßE"} {
		want := -1
		ls := strings.ToLower(s)
		for i, p := range m.pats {
			if strings.Contains(ls, p) {
				want = i
				break
			}
		}
		got := m.match(s)
		if (got >= 0) != (want >= 0) {
			t.Errorf("match(%q) = %d, want %d", s, got, want)
		}
	}
}

// A scanner walking extensions: challenged for user after user, never
// answering.
func TestDetectorProbeScanner(t *testing.T) {
	clk := newClock()
	d, bans, rec := newTestDetector(t, clk, DetectConfig{}, nil)
	src := addr("203.0.113.50")
	for i := 0; i < 100; i++ {
		if d.Challenged(src, fmt.Sprint(100+i)) {
			// Ten users need to be older than the grace: the ban comes
			// with the challenge two seconds after the tenth user's.
			if clk.Now().Sub(newClock().Now()) < DefaultProbeGrace {
				t.Fatalf("banned within the grace, at user %d", i)
			}
			if !bans.Banned(src) || !strings.HasPrefix(rec.added[0].Reason, "scanner: ") {
				t.Fatalf("ban = %+v", rec.added)
			}
			if i != 29 {
				t.Fatalf("banned at user %d, want 29 (2s after the tenth)", i)
			}
			return
		}
		clk.Add(100 * time.Millisecond)
	}
	t.Fatal("scanner never banned")
}

// An office behind one NAT: fifty phones boot together and register, each
// challenged and answering at once; they re-register and call all day.
func TestDetectorNATOfficeNotBanned(t *testing.T) {
	clk := newClock()
	d, bans, _ := newTestDetector(t, clk, DetectConfig{}, nil)
	nat := addr("198.51.100.1")
	for round := 0; round < 20; round++ {
		// All challenged in a burst...
		for p := 0; p < 50; p++ {
			if d.Challenged(nat, fmt.Sprintf("phone%d", p)) {
				t.Fatalf("round %d: banned at phone %d's challenge", round, p)
			}
			clk.Add(time.Millisecond)
		}
		// ...and all answering within the grace, some late.
		for p := 0; p < 50; p++ {
			d.Credentials(nat, fmt.Sprintf("phone%d", p))
			d.AuthSucceeded(nat, fmt.Sprintf("phone%d", p))
			clk.Add(20 * time.Millisecond)
		}
		clk.Add(30 * time.Second)
	}
	// Interleaved, as calls come: challenge, answer, next.
	for i := 0; i < 500; i++ {
		u := fmt.Sprintf("phone%d", i%50)
		if d.Challenged(nat, u) {
			t.Fatal("banned while phones answer their challenges")
		}
		d.Credentials(nat, u)
		clk.Add(500 * time.Millisecond)
	}
	if bans.Banned(nat) {
		t.Fatal("office banned")
	}
}

func TestDetectorProbeGrace(t *testing.T) {
	clk := newClock()
	d, bans, _ := newTestDetector(t, clk, DetectConfig{ProbeUsers: 3, ProbeGrace: 2 * time.Second}, nil)
	src := addr("192.0.2.5")
	// Answered just within the grace: never counts.
	for i := 0; i < 10; i++ {
		u := fmt.Sprint("slow", i)
		d.Challenged(src, u)
		clk.Add(2*time.Second - time.Millisecond)
		if d.Challenged(src, "x") {
			t.Fatal("banned for users answered within the grace")
		}
		d.Credentials(src, u)
		d.Credentials(src, "x")
	}
	// The same user challenged again and again counts once.
	for i := 0; i < 10; i++ {
		if d.Challenged(src, "same") {
			t.Fatal("one user counted many times")
		}
		clk.Add(3 * time.Second)
	}
	d.Credentials(src, "same")
	// Three users left unanswered past the grace: banned.
	d.Challenged(src, "a")
	d.Challenged(src, "b")
	d.Challenged(src, "c")
	clk.Add(2*time.Second - time.Nanosecond)
	if d.Challenged(src, "d") {
		t.Fatal("banned before the grace passed")
	}
	clk.Add(time.Nanosecond)
	if !d.Challenged(src, "e") || !bans.Banned(src) {
		t.Fatal("not banned with a, b and c past the grace")
	}
}

func TestDetectorProbeWindow(t *testing.T) {
	clk := newClock()
	d, bans, _ := newTestDetector(t, clk, DetectConfig{ProbeUsers: 3, ProbeWindow: 10 * time.Second, ProbeGrace: time.Second}, nil)
	src := addr("192.0.2.6")
	// One unanswered user every 6s: never three within 10s.
	for i := 0; i < 20; i++ {
		if d.Challenged(src, fmt.Sprint(i)) {
			t.Fatalf("banned at user %d", i)
		}
		clk.Add(6 * time.Second)
	}
	if bans.Banned(src) {
		t.Fatal("banned")
	}
	// The probe map stays small.
	d.Sweep(clk.Now())
	sh := d.shard(key16(src))
	if s := sh.m[key16(src)]; s != nil && len(s.probes) > 2 {
		t.Fatalf("%d probes kept beyond the window", len(s.probes))
	}
	// A user challenged again after the window is a fresh probe.
	d2, _, _ := newTestDetector(t, clk, DetectConfig{ProbeUsers: 2, ProbeWindow: 10 * time.Second, ProbeGrace: time.Second}, nil)
	d2.Challenged(src, "a")
	clk.Add(20 * time.Second)
	d2.Challenged(src, "a")
	d2.Challenged(src, "b")
	clk.Add(2 * time.Second)
	if !d2.Challenged(src, "c") {
		t.Fatal("a, challenged afresh after the window, and b did not count")
	}
}

func TestDetectorProbeMapBounded(t *testing.T) {
	clk := newClock()
	d, bans, _ := newTestDetector(t, clk, DetectConfig{ProbeUsers: 10}, nil)
	src := addr("192.0.2.7")
	// A thousand users within the grace: the oldest are kept, so the
	// ban still comes once they are past it.
	for i := 0; i < 1000; i++ {
		d.Challenged(src, fmt.Sprint(i))
	}
	sh := d.shard(key16(src))
	if n := len(sh.m[key16(src)].probes); n > d.probeCap {
		t.Fatalf("%d probes kept, cap %d", n, d.probeCap)
	}
	clk.Add(DefaultProbeGrace)
	if !d.Challenged(src, "next") || !bans.Banned(src) {
		t.Fatal("flood of users not banned after the grace")
	}
}

func TestDetectorRefusals(t *testing.T) {
	clk := newClock()
	d, bans, rec := newTestDetector(t, clk, DetectConfig{Refusals: 5, RefusalWindow: 10 * time.Second}, nil)
	src := addr("192.0.2.8")
	for i := 0; i < 100; i++ {
		if d.Refused(src, 486) || d.Refused(src, 200) || d.Refused(src, -1) || d.Refused(src, 10000) {
			t.Fatal("uncounted code banned")
		}
	}
	// Four in the window, then the window passes.
	for i := 0; i < 4; i++ {
		d.Refused(src, 404)
	}
	clk.Add(11 * time.Second)
	for i, code := range []int{403, 404, 484, 604} {
		if d.Refused(src, code) {
			t.Fatalf("banned at refusal %d after the window passed", i+1)
		}
	}
	if !d.Refused(src, 485) || !bans.Banned(src) {
		t.Fatal("fifth refusal within the window did not ban")
	}
	if rec.added[0].Reason != "scanner: 5 refusals in 10s" {
		t.Fatalf("reason %q", rec.added[0].Reason)
	}
	// The source's state is gone with the ban.
	if d.Stats().Sources != 0 || d.Stats().BansRefusals != 1 {
		t.Fatalf("stats = %+v", d.Stats())
	}
}

// The refusals a server relays to an authenticated PBX (a carrier's 404s
// for misdialled numbers) do not add up to a ban: each authentication
// starts the count again. Without one they do.
func TestDetectorRefusalsResetByAuthentication(t *testing.T) {
	clk := newClock()
	d, bans, _ := newTestDetector(t, clk, DetectConfig{Refusals: 3}, nil)
	pbx, other := addr("192.0.2.20"), addr("192.0.2.21")
	for i := 0; i < 10; i++ {
		d.AuthSucceeded(pbx, "pbx@example.test")
		for j := 0; j < 2; j++ {
			if d.Refused(pbx, 404) {
				t.Fatalf("call %d: an authenticated source banned for relayed refusals", i)
			}
		}
	}
	d.AuthSucceeded(other, "x@example.test") // another source's success counts for it alone
	for i := 0; i < 3; i++ {
		d.Refused(pbx, 404)
	}
	if !bans.Banned(pbx) {
		t.Fatal("three refusals in a row, no authentication between: not banned")
	}
}

func TestDetectorAuthFailures(t *testing.T) {
	clk := newClock()
	d, bans, rec := newTestDetector(t, clk, DetectConfig{}, nil)
	src := addr("192.0.2.9")
	for i := 0; i < 4; i++ {
		if d.AuthFailed(src, "alice") {
			t.Fatalf("banned at failure %d", i+1)
		}
		clk.Add(time.Second)
	}
	// A success from the source starts the count again.
	d.AuthSucceeded(src, "bob")
	for i := 0; i < 4; i++ {
		if d.AuthFailed(src, "alice") {
			t.Fatalf("banned at failure %d after a success", i+1)
		}
	}
	if !d.AuthFailed(src, "carol") || !bans.Banned(src) {
		t.Fatal("fifth failure did not ban")
	}
	if rec.added[0].Reason != "auth: 5 failures in 1m0s" || rec.added[0].Kind() != "auth" {
		t.Fatalf("reason %q", rec.added[0].Reason)
	}
	// Spread out beyond the window: no ban.
	src2 := addr("2001:db8:5::1")
	for i := 0; i < 20; i++ {
		if d.AuthFailed(src2, "alice") {
			t.Fatal("failures 20s apart banned")
		}
		clk.Add(20 * time.Second)
	}
}

func TestDetectorAccountDelay(t *testing.T) {
	clk := newClock()
	d, bans, _ := newTestDetector(t, clk, DetectConfig{AccountFailures: 20, AccountWindow: 5 * time.Minute, AccountDelay: 2 * time.Second}, nil)
	if d.ChallengeDelay("alice") != 0 {
		t.Fatal("delay before any failure")
	}
	// Twenty sources, one guess each: nobody banned, alice slowed.
	for i := 0; i < 20; i++ {
		src := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if d.AuthFailed(src, "alice") {
			t.Fatal("a source with one failure banned")
		}
		if i < 19 && d.ChallengeDelay("alice") != 0 {
			t.Fatalf("slowed after %d failures", i+1)
		}
		clk.Add(time.Second)
	}
	if got := d.ChallengeDelay("alice"); got != 2*time.Second {
		t.Fatalf("ChallengeDelay(alice) = %s, want 2s", got)
	}
	if d.ChallengeDelay("bob") != 0 {
		t.Fatal("bob slowed for alice's attack")
	}
	if bans.Len() != 0 {
		t.Fatal("a ban for distributed guessing")
	}
	// The owner logging in does not end it; the window passing does.
	d.AuthSucceeded(addr("192.0.2.200"), "alice")
	clk.Add(5*time.Minute - 2*time.Second) // a second short of 5m after the last failure
	if d.ChallengeDelay("alice") == 0 {
		t.Fatal("slowdown ended early")
	}
	clk.Add(time.Second)
	if d.ChallengeDelay("alice") != 0 {
		t.Fatal("slowdown outlived the window")
	}
	if d.Stats().Slowed != 1 {
		t.Fatalf("stats = %+v", d.Stats())
	}
}

func TestDetectorTrustedAndDisabled(t *testing.T) {
	clk := newClock()
	trusted := addr("10.0.0.1")
	d, bans, _ := newTestDetector(t, clk, DetectConfig{AuthFailures: 1, Refusals: 1, ProbeUsers: 1, ProbeGrace: time.Nanosecond, AccountFailures: 1},
		TrustFunc([]netip.Prefix{prefix("10.0.0.0/8")}))
	d.Challenged(trusted, "a")
	clk.Add(time.Second)
	if d.Challenged(trusted, "b") || d.Refused(trusted, 404) || d.AuthFailed(trusted, "x") || d.UserAgent(trusted, "sipvicious") {
		t.Fatal("trusted source banned")
	}
	if bans.Len() != 0 || d.ChallengeDelay("x") != 0 || d.Stats().Sources != 0 {
		t.Fatal("trusted source tracked")
	}
	off := false
	d2, bans2, _ := newTestDetector(t, clk, DetectConfig{Enabled: &off, AuthFailures: 1, Refusals: 1, AccountFailures: 1}, nil)
	src := addr("192.0.2.1")
	if d2.UserAgent(src, "sipvicious") || d2.Refused(src, 404) || d2.AuthFailed(src, "x") || d2.ChallengeDelay("x") != 0 || bans2.Len() != 0 {
		t.Fatal("disabled detector acted")
	}
	// A rule turned off with -1.
	d3, _, _ := newTestDetector(t, clk, DetectConfig{AuthFailures: -1}, nil)
	for i := 0; i < 100; i++ {
		if d3.AuthFailed(src, "x") {
			t.Fatal("auth_failures -1 banned")
		}
	}
}

func TestDetectorIPv6(t *testing.T) {
	clk := newClock()
	d, bans, rec := newTestDetector(t, clk, DetectConfig{AuthFailures: 3}, nil)
	// Three addresses of one /64 are one source.
	for i, s := range []string{"2001:db8:7::1", "2001:db8:7::2", "2001:db8:7:0:ffff::3"} {
		if d.AuthFailed(addr(s), "alice") != (i == 2) {
			t.Fatalf("failure %d", i+1)
		}
	}
	if rec.added[0].Prefix != prefix("2001:db8:7::/64") || !bans.Banned(addr("2001:db8:7::99")) || bans.Banned(addr("2001:db8:8::1")) {
		t.Fatalf("ban = %+v", rec.added)
	}
}

func TestDetectorBounded(t *testing.T) {
	clk := newClock()
	d, _, _ := newTestDetector(t, clk, DetectConfig{MaxSources: 10, MaxAccounts: 5, AccountFailures: 100}, nil)
	for i := 0; i < 1000; i++ {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		d.AuthFailed(src, fmt.Sprint("user", i))
		d.Challenged(src, fmt.Sprint("user", i))
	}
	st := d.Stats()
	if st.Sources > 10 || st.Accounts > 5 {
		t.Fatalf("stats = %+v: over the bounds", st)
	}
	n := 0
	for i := range d.shards {
		n += len(d.shards[i].m)
	}
	if n != st.Sources {
		t.Fatalf("count %d, table %d", st.Sources, n)
	}
	// Everything lapses: Sweep empties the tables.
	clk.Add(10 * time.Minute)
	d.Sweep(clk.Now())
	if st := d.Stats(); st.Sources != 0 || st.Accounts != 0 {
		t.Fatalf("after Sweep: %+v", st)
	}
}

func TestDetectorConcurrent(t *testing.T) {
	clk := newClock()
	d, _, _ := newTestDetector(t, clk, DetectConfig{MaxSources: 100, MaxAccounts: 50}, nil)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				src := netip.AddrFrom4([4]byte{10, byte(w), 0, byte(i % 200)})
				u := fmt.Sprint(i % 70)
				d.UserAgent(src, "ua")
				d.Challenged(src, u)
				d.Credentials(src, u)
				d.Refused(src, 404)
				d.AuthFailed(src, u)
				d.AuthSucceeded(src, u)
				d.ChallengeDelay(u)
				if i%100 == 0 {
					clk.Add(time.Second)
					d.Sweep(clk.Now())
				}
			}
		}()
	}
	wg.Wait()
	if st := d.Stats(); st.Sources > 100 || st.Accounts > 50 {
		t.Fatalf("stats = %+v", st)
	}
}
