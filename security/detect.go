package security

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	detShardBits = 5
	detShards    = 1 << detShardBits
	// detSweepEvery is how often a shard drops its stale sources, on the
	// path of a call that finds it due.
	detSweepEvery = int64(30 * time.Second)
	// detFullSweepEvery spaces the sweeps made when a table is full.
	detFullSweepEvery = int64(time.Second)
	// maxNameLen clips the user and account names kept: they come from
	// the attacker.
	maxNameLen = 128
)

// suspect is what the detector knows of one source.
type suspect struct {
	last     int64            // Unix nanoseconds of the last event
	probes   map[string]int64 // user → first challenged without credentials
	refusals ring
	auth     ring
}

// account is what the detector knows of one account's failures.
type account struct {
	fails     ring
	slowUntil int64
	last      int64
}

type detShard struct {
	mu        sync.Mutex
	m         map[[16]byte]*suspect
	lastSweep int64
	_         [40]byte
}

// Detector bans scanners and password guessers, and slows the challenges
// of accounts under attack from many sources. It is fed by the server
// with what it saw and answered; its methods are safe for concurrent use.
type Detector struct {
	enabled bool
	cfg     DetectConfig
	ua      uaMatcher
	codes   [700]bool // counted by Refused

	probeGrace, probeWindow, refusalWindow, authWindow int64
	accountWindow, accountDelay, keep, banTime         int64
	probeCap                                           int

	bans    *Bans
	trusted func(netip.Addr) bool
	now     func() time.Time

	tracked       atomic.Int64
	lastFullSweep atomic.Int64
	shards        [detShards]detShard

	accMu        sync.Mutex
	accounts     map[string]*account
	accLastSweep int64
	slowMax      atomic.Int64 // the latest slowUntil of any account

	bansUA, bansProbe, bansRefusals, bansAuth, slowed counter
}

// DetectorStats are the counters of a Detector.
type DetectorStats struct {
	// Bans placed, by rule.
	BansUserAgent, BansProbe, BansRefusals, BansAuth uint64
	// Slowed counts the times an account's challenges started being
	// slowed.
	Slowed uint64
	// Sources and Accounts are the numbers tracked now.
	Sources, Accounts int
}

// NewDetector checks cfg and returns a Detector that bans into bans.
// trusted (may be nil) says which sources are ignored; now is the clock
// (nil: time.Now).
func NewDetector(cfg DetectConfig, bans *Bans, trusted func(netip.Addr) bool, now func() time.Time) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bans == nil {
		return nil, errors.New("security: NewDetector needs a Bans")
	}
	cfg = cfg.WithDefaults()
	if now == nil {
		now = time.Now
	}
	d := &Detector{
		enabled:       on(cfg.Enabled),
		cfg:           cfg,
		ua:            newUAMatcher(cfg.UserAgents),
		probeGrace:    int64(cfg.ProbeGrace),
		probeWindow:   int64(cfg.ProbeWindow),
		refusalWindow: int64(cfg.RefusalWindow),
		authWindow:    int64(cfg.AuthWindow),
		accountWindow: int64(cfg.AccountWindow),
		accountDelay:  int64(cfg.AccountDelay),
		banTime:       int64(cfg.BanTime),
		probeCap:      2*max(cfg.ProbeUsers, 0) + 16,
		bans:          bans,
		trusted:       trusted,
		now:           now,
		accounts:      map[string]*account{},
	}
	d.keep = max(d.probeWindow, d.refusalWindow, d.authWindow)
	for _, c := range cfg.RefusalCodes {
		d.codes[c] = true
	}
	t := now().UnixNano()
	for i := range d.shards {
		d.shards[i].m = map[[16]byte]*suspect{}
		d.shards[i].lastSweep = t
	}
	d.accLastSweep = t
	return d, nil
}

func (d *Detector) ignored(src netip.Addr) bool {
	return !d.enabled || !src.IsValid() || d.trusted != nil && d.trusted(src)
}

func (d *Detector) shard(k [16]byte) *detShard {
	return &d.shards[hash16(k, 0)>>(64-detShardBits)]
}

// suspectLocked returns the entry of k in sh, made if need be; nil when
// the table is full and nothing could be dropped.
func (d *Detector) suspectLocked(sh *detShard, k [16]byte, now int64) *suspect {
	if now-sh.lastSweep >= detSweepEvery {
		d.sweepShardLocked(sh, now)
	}
	if s := sh.m[k]; s != nil {
		s.last = now
		return s
	}
	if d.tracked.Add(1) > int64(d.cfg.MaxSources) {
		if len(sh.m) == 0 {
			d.tracked.Add(-1)
			return nil
		}
		// Full: this shard's stalest-looking entry goes (map order is
		// arbitrary; an attacker spreading over sources can flush state
		// anyway, and is banned per source).
		d.sweepShardLocked(sh, now)
		if d.tracked.Load() > int64(d.cfg.MaxSources) {
			for victim := range sh.m {
				delete(sh.m, victim)
				d.tracked.Add(-1)
				break
			}
		}
	}
	s := &suspect{last: now}
	sh.m[k] = s
	return s
}

// dropLocked forgets k (banned: its packets no longer reach us).
func (d *Detector) dropLocked(sh *detShard, k [16]byte) {
	if _, ok := sh.m[k]; ok {
		delete(sh.m, k)
		d.tracked.Add(-1)
	}
}

func (d *Detector) sweepShardLocked(sh *detShard, now int64) {
	sh.lastSweep = now
	for k, s := range sh.m {
		if now-s.last > d.keep {
			delete(sh.m, k)
			d.tracked.Add(-1)
			continue
		}
		for u, t := range s.probes {
			if now-t > d.probeWindow {
				delete(s.probes, u)
			}
		}
	}
}

func (d *Detector) ban(k [16]byte, now int64, reason string) bool {
	return d.bans.Add(Ban{
		Prefix:  keyPrefix(k),
		Reason:  reason,
		Created: time.Unix(0, now),
		Expires: time.Unix(0, now+d.banTime),
	})
}

// UserAgent bans src if ua contains one of the scanner User-Agents, and
// reports whether it did. It is meant for every request: it neither
// allocates nor locks unless it bans.
func (d *Detector) UserAgent(src netip.Addr, ua string) bool {
	if ua == "" || len(d.ua.pats) == 0 {
		return false
	}
	i := d.ua.match(ua)
	if i < 0 || d.ignored(src) {
		return false
	}
	now := d.now().UnixNano()
	k := key16(src)
	sh := d.shard(k)
	sh.mu.Lock()
	d.dropLocked(sh, k)
	sh.mu.Unlock()
	d.bansUA.Add(1)
	return d.ban(k, now, fmt.Sprintf("scanner: user-agent %q", d.cfg.UserAgents[i]))
}

// Challenged records that the server challenged (401/407) a request from
// src for user that carried no credentials for it; it bans src, and
// reports so, when ProbeUsers users challenged from it were not followed
// by credentials within ProbeGrace.
func (d *Detector) Challenged(src netip.Addr, user string) bool {
	if d.cfg.ProbeUsers <= 0 || d.ignored(src) {
		return false
	}
	now := d.now().UnixNano()
	k := key16(src)
	sh := d.shard(k)
	sh.mu.Lock()
	s := d.suspectLocked(sh, k, now)
	if s == nil {
		sh.mu.Unlock()
		return false
	}
	if s.probes == nil {
		s.probes = map[string]int64{}
	}
	user = clip(user)
	if t, ok := s.probes[user]; !ok || now-t > d.probeWindow {
		if !ok && len(s.probes) >= d.probeCap {
			for u, t := range s.probes {
				if now-t > d.probeWindow {
					delete(s.probes, u)
				}
			}
		}
		// When still full, newer users are not tracked: the older ones
		// are those about to count.
		if ok || len(s.probes) < d.probeCap {
			s.probes[strings.Clone(user)] = now
		}
	}
	n := 0
	for _, t := range s.probes {
		if age := now - t; age >= d.probeGrace && age <= d.probeWindow {
			n++
		}
	}
	hit := n >= d.cfg.ProbeUsers
	if hit {
		d.dropLocked(sh, k)
	}
	sh.mu.Unlock()
	if !hit {
		return false
	}
	d.bansProbe.Add(1)
	return d.ban(k, now, fmt.Sprintf("scanner: %d users challenged without an answer in %s", n, d.cfg.ProbeWindow))
}

// Credentials records that a request from src carried credentials for
// user: the challenge for user was answered, so user does not count as
// probed (whether the credentials were right is AuthFailed's business).
func (d *Detector) Credentials(src netip.Addr, user string) {
	if d.cfg.ProbeUsers <= 0 || d.ignored(src) {
		return
	}
	k := key16(src)
	sh := d.shard(k)
	sh.mu.Lock()
	if s := sh.m[k]; s != nil && s.probes != nil {
		delete(s.probes, clip(user))
	}
	sh.mu.Unlock()
}

// Refused records that the server answered src with code; codes in
// RefusalCodes count, and Refusals of them within RefusalWindow ban src.
// It reports whether it banned.
func (d *Detector) Refused(src netip.Addr, code int) bool {
	if d.cfg.Refusals <= 0 || code < 0 || code >= len(d.codes) || !d.codes[code] || d.ignored(src) {
		return false
	}
	now := d.now().UnixNano()
	if !d.count(src, now, func(s *suspect) *ring { return &s.refusals }, d.cfg.Refusals, d.refusalWindow) {
		return false
	}
	d.bansRefusals.Add(1)
	return d.ban(key16(src), now, fmt.Sprintf("scanner: %d refusals in %s", d.cfg.Refusals, d.cfg.RefusalWindow))
}

// AuthFailed records wrong credentials from src for account: AuthFailures
// of them within AuthWindow ban src (reported), and AccountFailures against
// account from anywhere within AccountWindow slow its challenges (see
// ChallengeDelay). account is whatever names an account to the server
// (user@domain, say), the same as given to ChallengeDelay.
func (d *Detector) AuthFailed(src netip.Addr, account string) bool {
	if d.ignored(src) {
		return false
	}
	now := d.now().UnixNano()
	if d.cfg.AccountFailures > 0 {
		d.accountFailed(account, now)
	}
	if d.cfg.AuthFailures <= 0 {
		return false
	}
	if !d.count(src, now, func(s *suspect) *ring { return &s.auth }, d.cfg.AuthFailures, d.authWindow) {
		return false
	}
	d.bansAuth.Add(1)
	return d.ban(key16(src), now, fmt.Sprintf("auth: %d failures in %s", d.cfg.AuthFailures, d.cfg.AuthWindow))
}

// count records an event of src in the ring pick chooses and reports
// whether it makes n within window; src is forgotten then, its ban
// being the caller's to place.
func (d *Detector) count(src netip.Addr, now int64, pick func(*suspect) *ring, n int, window int64) bool {
	k := key16(src)
	sh := d.shard(k)
	sh.mu.Lock()
	s := d.suspectLocked(sh, k, now)
	hit := s != nil && pick(s).add(now, n, window)
	if hit {
		d.dropLocked(sh, k)
	}
	sh.mu.Unlock()
	return hit
}

// AuthSucceeded records good credentials from src: its counts of
// failures and of refusals start again (see DetectConfig.AuthFailures and
// Refusals). The refusals go too because the server counts every answer
// it sends, those it relays from further on included: the 404s and 403s
// a carrier gives an authenticated PBX's misdialled calls are not a scan.
// An account's slowdown is left as it is: the attack on it goes on from
// elsewhere.
func (d *Detector) AuthSucceeded(src netip.Addr, account string) {
	if d.cfg.AuthFailures <= 0 && d.cfg.Refusals <= 0 || d.ignored(src) {
		return
	}
	k := key16(src)
	sh := d.shard(k)
	sh.mu.Lock()
	if s := sh.m[k]; s != nil {
		s.auth.reset()
		s.refusals.reset()
	}
	sh.mu.Unlock()
}

func (d *Detector) accountFailed(name string, now int64) {
	name = clip(name)
	d.accMu.Lock()
	defer d.accMu.Unlock()
	a := d.accounts[name]
	if a == nil {
		if len(d.accounts) >= d.cfg.MaxAccounts {
			d.makeAccountRoomLocked(now)
		}
		a = &account{}
		d.accounts[strings.Clone(name)] = a
	}
	a.last = now
	if a.fails.add(now, d.cfg.AccountFailures, d.accountWindow) {
		if a.slowUntil <= now {
			d.slowed.Add(1)
		}
		a.slowUntil = now + d.accountWindow
		if a.slowUntil > d.slowMax.Load() {
			d.slowMax.Store(a.slowUntil)
		}
	}
}

// makeAccountRoomLocked drops the accounts with nothing in the window
// (at most once per detFullSweepEvery), then, if none, one arbitrary
// account, not a slowed one if it can.
func (d *Detector) makeAccountRoomLocked(now int64) {
	if now-d.accLastSweep >= detFullSweepEvery {
		d.accLastSweep = now
		for name, a := range d.accounts {
			if now-a.last > d.accountWindow && now >= a.slowUntil {
				delete(d.accounts, name)
			}
		}
		if len(d.accounts) < d.cfg.MaxAccounts {
			return
		}
	}
	var victim string
	found := false
	for name, a := range d.accounts {
		if !found || now >= a.slowUntil {
			victim, found = name, true
			if now >= a.slowUntil {
				break
			}
		}
	}
	delete(d.accounts, victim)
}

// ChallengeDelay is how long the server is to wait before challenging a
// request for account: AccountDelay while the account is under attack,
// else 0. The wait slows guessing down; the owner, whose answer is right,
// still gets in.
func (d *Detector) ChallengeDelay(account string) time.Duration {
	if !d.enabled || d.cfg.AccountFailures <= 0 {
		return 0
	}
	now := d.now().UnixNano()
	if now >= d.slowMax.Load() {
		return 0
	}
	d.accMu.Lock()
	a := d.accounts[clip(account)]
	slow := a != nil && now < a.slowUntil
	d.accMu.Unlock()
	if slow {
		return time.Duration(d.accountDelay)
	}
	return 0
}

// Sweep forgets the sources and accounts with nothing left in their
// windows. The detector sweeps on its own as it is used; a server may also
// call Sweep from a ticker.
func (d *Detector) Sweep(now time.Time) {
	t := now.UnixNano()
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		d.sweepShardLocked(sh, t)
		sh.mu.Unlock()
	}
	d.accMu.Lock()
	for name, a := range d.accounts {
		if t-a.last > d.accountWindow && t >= a.slowUntil {
			delete(d.accounts, name)
		}
	}
	d.accMu.Unlock()
}

// Stats returns the detector's counters.
func (d *Detector) Stats() DetectorStats {
	d.accMu.Lock()
	accounts := len(d.accounts)
	d.accMu.Unlock()
	return DetectorStats{
		BansUserAgent: d.bansUA.Load(),
		BansProbe:     d.bansProbe.Load(),
		BansRefusals:  d.bansRefusals.Load(),
		BansAuth:      d.bansAuth.Load(),
		Slowed:        d.slowed.Load(),
		Sources:       int(d.tracked.Load()),
		Accounts:      accounts,
	}
}

func clip(s string) string {
	if len(s) > maxNameLen {
		return s[:maxNameLen]
	}
	return s
}

// uaMatcher finds any of a set of substrings in a string, ignoring ASCII
// case, without allocating: patterns are indexed by their first byte, so
// each byte of the string costs a table look-up.
type uaMatcher struct {
	pats  []string // ASCII-lowercased
	first [256][]int32
}

func newUAMatcher(pats []string) uaMatcher {
	var m uaMatcher
	for i, p := range pats {
		p = lowerASCII(strings.TrimSpace(p))
		if p == "" {
			p = "\x00" // Validate refuses empty patterns; keep indexes aligned
		}
		m.pats = append(m.pats, p)
		m.first[p[0]] = append(m.first[p[0]], int32(i))
	}
	return m
}

// match returns the index of a pattern found in s, or -1.
func (m *uaMatcher) match(s string) int {
	for i := 0; i < len(s); i++ {
		for _, pi := range m.first[lowerByte(s[i])] {
			p := m.pats[pi]
			if len(s)-i >= len(p) && equalLower(s[i+1:i+len(p)], p[1:]) {
				return int(pi)
			}
		}
	}
	return -1
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalLower reports whether s, ASCII-lowercased, is p.
func equalLower(s, p string) bool {
	for i := 0; i < len(p); i++ {
		if lowerByte(s[i]) != p[i] {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerByte(c)
	}
	return string(b)
}
