package resolve

import (
	"bufio"
	"bytes"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
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
// every hostsRecheck.
type hosts struct {
	path string

	mu      sync.Mutex
	checked time.Time // when the file's metadata was last looked at
	mtime   time.Time
	size    int64
	byName  map[string][]netip.Addr // lower-case FQDN → addresses, file order
}

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
	h.mu.Lock()
	if h.checked.IsZero() || now.Sub(h.checked) >= hostsRecheck || now.Before(h.checked) {
		h.checked = now
		h.reload()
	}
	addrs, ok := h.byName[name]
	h.mu.Unlock()
	if !ok {
		return nil, false
	}
	var rrs []dns.RR
	hdr := dns.RR_Header{Name: name, Rrtype: qtype, Class: dns.ClassINET}
	for _, a := range addrs {
		switch {
		case qtype == dns.TypeA && a.Is4():
			rrs = append(rrs, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case qtype == dns.TypeAAAA && a.Is6():
			rrs = append(rrs, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	return rrs, true
}

// reload reads the file again when it changed; a file that cannot be read
// counts as empty. Called with mu held.
func (h *hosts) reload() {
	fi, err := os.Stat(h.path)
	if err != nil {
		h.byName, h.mtime, h.size = nil, time.Time{}, 0
		return
	}
	if h.byName != nil && fi.ModTime().Equal(h.mtime) && fi.Size() == h.size {
		return
	}
	f, err := os.Open(h.path)
	if err != nil {
		h.byName = nil
		return
	}
	defer f.Close()
	h.byName = parseHosts(io.LimitReader(f, maxHostsSize))
	h.mtime, h.size = fi.ModTime(), fi.Size()
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
