package resolve

import (
	"bufio"
	"bytes"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Hosts-file limits: how often the file's modification time is looked at,
// and how much of it is read (a hosts file of megabytes is a mistake, not a
// zone).
const (
	hostsRecheck = 5 * time.Second
	maxHostsSize = 4 << 20
)

// hosts answers A and AAAA lookups from a hosts file (hosts(5)) before the
// DNS is asked, as the system resolver does with "files dns": a name an
// operator pins there is not looked up elsewhere. The file is read again
// when its modification time or size changes, looked at no more often than
// every hostsRecheck. Lookups read the current table without a lock; the
// one that finds the recheck due does it, the others do not wait for it.
type hosts struct {
	path   string
	table  atomic.Pointer[hostsTable]
	reload sync.Mutex // held by the lookup doing the recheck
}

// hostsTable is one reading of the file, its answers built once.
type hostsTable struct {
	checked time.Time // when the file's metadata was looked at
	mtime   time.Time
	size    int64
	byName  map[string]hostsEntry // lower-case FQDN
}

// hostsEntry is a name's records, in file order; shared, never modified.
type hostsEntry struct{ a, aaaa []dns.RR }

// newHosts returns a hosts table reading path; nil when path is "none".
func newHosts(path string) *hosts {
	if path == HostsNone {
		return nil
	}
	return &hosts{path: path}
}

// lookup returns the records of type qtype (A or AAAA) the file gives
// name, and whether the file names it at all: a name the file knows gets a
// negative answer for the family it has no address of, without asking the
// DNS.
func (h *hosts) lookup(name string, qtype uint16, now time.Time) ([]dns.RR, bool) {
	if h == nil || (qtype != dns.TypeA && qtype != dns.TypeAAAA) {
		return nil, false
	}
	t := h.table.Load()
	if t == nil || now.Sub(t.checked) >= hostsRecheck || now.Before(t.checked) {
		t = h.recheck(t, now)
	}
	e, ok := t.byName[name]
	if !ok {
		return nil, false
	}
	if qtype == dns.TypeA {
		return e.a, true
	}
	return e.aaaa, true
}

// recheck reads the file again if it changed since old (nil: never read)
// and publishes the result. A lookup that finds another one rechecking
// goes on with old, unless there is none yet.
func (h *hosts) recheck(old *hostsTable, now time.Time) *hostsTable {
	if old != nil && !h.reload.TryLock() {
		return old
	}
	if old == nil {
		h.reload.Lock()
	}
	defer h.reload.Unlock()
	if cur := h.table.Load(); cur != old {
		return cur // another lookup rechecked meanwhile
	}
	t := &hostsTable{checked: now}
	if fi, err := os.Stat(h.path); err == nil {
		if old != nil && old.byName != nil && fi.ModTime().Equal(old.mtime) && fi.Size() == old.size {
			t.mtime, t.size, t.byName = old.mtime, old.size, old.byName
		} else if f, err := os.Open(h.path); err == nil {
			t.byName = hostsEntries(parseHosts(io.LimitReader(f, maxHostsSize)))
			t.mtime, t.size = fi.ModTime(), fi.Size()
			f.Close()
		}
	}
	h.table.Store(t)
	return t
}

// hostsEntries builds the records of each name once.
func hostsEntries(m map[string][]netip.Addr) map[string]hostsEntry {
	out := make(map[string]hostsEntry, len(m))
	for name, addrs := range m {
		var e hostsEntry
		for _, a := range addrs {
			if a.Is4() {
				e.a = append(e.a, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: a.AsSlice()})
			} else {
				e.aaaa = append(e.aaaa, &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET}, AAAA: a.AsSlice()})
			}
		}
		out[name] = e
	}
	return out
}

// parseHosts reads hosts(5) lines: an address, then names, "#" starting a
// comment. Lines that do not start with an address are skipped. Addresses
// with an IPv6 zone are skipped: a SIP target cannot carry one.
func parseHosts(r io.Reader) map[string][]netip.Addr {
	m := make(map[string][]netip.Addr)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil || a.Zone() != "" {
			continue
		}
		a = a.Unmap()
		for _, n := range f[1:] {
			if !isHostName(n) {
				continue
			}
			n = strings.ToLower(dns.Fqdn(n))
			if _, ok := dns.IsDomainName(n); !ok {
				continue
			}
			if !containsAddr(m[n], a) {
				m[n] = append(m[n], a)
			}
		}
	}
	return m
}

// isHostName reports whether s is made of the characters of host names
// (letters, digits, '-', '_', '.') and is not only dots: hosts files hold no
// escapes.
func isHostName(s string) bool {
	label := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			label = true
		case c == '.':
		default:
			return false
		}
	}
	return label
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

// isInvalid reports whether name is "invalid." or under it: RFC 6761 §6.4
// asks resolvers to answer such names negatively without a query.
func isInvalid(name string) bool {
	return name == "invalid." || strings.HasSuffix(name, ".invalid.")
}
