package registrar

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/hlas-voip/hlas/store"
)

// TestBindingCompactForm stores bindings in the compact form and reads
// them back, the way a restart does (fromStore) and the way a write to
// the store (toStore) and Lookup (export) do: nothing is lost.
func TestBindingCompactForm(t *testing.T) {
	base := store.Binding{
		AOR: "alice@example.test", ID: "0123456789abcdef", Contact: "<sip:alice@198.51.100.7:5060;transport=udp>",
		Q: 1000, Expires: t0.Add(time.Hour), CallID: "a84b4c76e66710@pc33.atlanta.example.com", CSeq: 314159,
		Source: "198.51.100.7:5060", Local: "192.0.2.10:5060", Transport: "UDP", UserAgent: "test-phone/1.0", Updated: t0,
	}
	tests := []struct {
		name string
		mod  func(*store.Binding)
	}{
		{"a sipp REGISTER", func(*store.Binding) {}},
		{"behind a NAT", func(b *store.Binding) { b.NAT = true }},
		{"RFC 5626 outbound over TLS with a Path", func(b *store.Binding) {
			b.Contact = `<sip:alice@[2001:db8::7]:5061;transport=tls>;+sip.instance="<urn:uuid:f81d4fae>";reg-id=1`
			b.Instance, b.RegID, b.Q = `"<urn:uuid:f81d4fae>"`, 1, 500
			b.Path = "<sip:edge1.test;lr;ob>, <sip:edge2.test;lr>"
			b.Source, b.Local, b.Transport = "[2001:db8::7]:49152", "[2001:db8::1]:5061", "TLS"
		}},
		{"IPv6 link-local addresses keep their zones", func(b *store.Binding) {
			b.Source, b.Local = "[fe80::7%eth0]:5060", "[fe80::1%eth1]:5060"
		}},
		{"an IPv4-mapped IPv6 source stays IPv6", func(b *store.Binding) { b.Source = "[::ffff:198.51.100.7]:5060" }},
		{"an ID not made by newID", func(b *store.Binding) { b.ID = "legacy-id-1" }},
		{"an upper-case hex ID stays as written", func(b *store.Binding) { b.ID = "0123456789ABCDEF" }},
		{"a transport without an index", func(b *store.Binding) { b.Transport = "SCTP" }},
		{"no transport and no addresses", func(b *store.Binding) { b.Transport, b.Source, b.Local = "", "", "" }},
		{"fields longer than a one-byte length", func(b *store.Binding) {
			b.UserAgent = strings.Repeat("u", 300)
			b.Path = "<sip:" + strings.Repeat("p", 70000) + ".test;lr>"
		}},
		{"times with nanoseconds", func(b *store.Binding) {
			b.Expires, b.Updated = t0.Add(time.Hour+123456789), t0.Add(987654321)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := base
			tt.mod(&want)
			b, err := fromStore(&want)
			if err != nil {
				t.Fatal(err)
			}
			if got := b.toStore(); !sameStored(got, want) {
				t.Errorf("toStore\n%+v\nwant\n%+v", got, want)
			}
			got := b.export()
			src, _ := netip.ParseAddrPort(want.Source)
			local, _ := netip.ParseAddrPort(want.Local)
			if got.AOR != want.AOR || got.ID != want.ID || got.Contact.String() != want.Contact || got.Q != want.Q ||
				!got.Expires.Equal(want.Expires) || got.CallID != want.CallID || got.CSeq != want.CSeq ||
				got.Path != want.Path || got.Instance != want.Instance || got.RegID != want.RegID ||
				got.Source != src || got.Local != local || got.Transport != want.Transport ||
				got.UserAgent != want.UserAgent || !got.Updated.Equal(want.Updated) || got.NAT != want.NAT {
				t.Errorf("export\n%+v\nfrom\n%+v", got, want)
			}
		})
	}
	bad := base
	bad.Contact = "<sip:alice@"
	if _, err := fromStore(&bad); err == nil {
		t.Error("a Contact that does not parse was accepted")
	}
}

func sameStored(a, b store.Binding) bool {
	if !a.Expires.Equal(b.Expires) || !a.Updated.Equal(b.Updated) {
		return false
	}
	a.Expires, a.Updated = b.Expires, b.Updated
	return a == b
}

// TestRefreshKeepsData checks that a refresh changing only numbers (CSeq,
// expiry) reuses the binding's data instead of allocating them again, and
// that a new Call-ID gets new data.
func TestRefreshKeepsData(t *testing.T) {
	f := newFixture(t, nil, nil)
	data := func() string {
		f.r.loc.mu.RLock()
		defer f.r.loc.mu.RUnlock()
		return f.r.loc.records["alice@example.test"].one.data
	}
	f.send(t, reg{contacts: []string{"<sip:alice@198.51.100.7>"}}, 1)
	first := data()
	f.clock.Add(time.Minute)
	f.send(t, reg{contacts: []string{"<sip:alice@198.51.100.7>"}}, 2)
	if d := data(); !sameString(d, first) {
		t.Error("a refresh allocated new data")
	}
	f.send(t, reg{callID: "call-2", contacts: []string{"<sip:alice@198.51.100.7>"}}, 1)
	if d := data(); sameString(d, first) || fieldOf(d, fieldCallID) != "call-2" {
		t.Errorf("a new Call-ID kept the old data: %q", fieldOf(d, fieldCallID))
	}
}

// sameString reports whether a and b are the same bytes in memory.
func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

// TestLoadMergesRowsOutOfOrder loads rows from a store that does not keep
// one AOR's rows together: each AOR still gets all its bindings, once.
func TestLoadMergesRowsOutOfOrder(t *testing.T) {
	var rows []store.Binding
	for i := range 30 {
		for _, user := range []string{"carol", "alice", "bob"} {
			rows = append(rows, store.Binding{
				AOR: user + "@example.test", ID: fmt.Sprintf("%016x", len(rows)),
				Contact: fmt.Sprintf("<sip:%s@198.51.100.%d>", user, i), Q: 1000,
				Expires: t0.Add(time.Duration(60+i) * time.Second), Transport: "UDP", Updated: t0,
			})
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	f := newFixture(t, rowStore{rows: rows}, nil)
	for _, user := range []string{"alice", "bob", "carol"} {
		if got := f.r.Lookup(user + "@example.test"); len(got) != 30 {
			t.Errorf("%s has %d bindings, want 30", user, len(got))
		}
	}
	checkLocation(t, f.r.loc)
}

// checkLocation verifies the location's invariants: every record is in
// the map under its AOR and in the slot of its earliest expiry at its
// position, and the counts add up.
func checkLocation(t *testing.T, l *location) {
	t.Helper()
	l.mu.RLock()
	defer l.mu.RUnlock()
	count, scheduled := 0, 0
	for aor, rec := range l.records {
		n := rec.len()
		if n == 0 {
			t.Fatalf("%s: an empty record in the map", aor)
		}
		count += n
		due := uint32(0)
		for i := range n {
			b := rec.at(i)
			if b.field(fieldAOR) != aor {
				t.Fatalf("%s: binding %d is %s's", aor, i, b.field(fieldAOR))
			}
			if d := dueSecond(b.expires); due == 0 || d < due {
				due = d
			}
		}
		if rec.due != due {
			t.Fatalf("%s: due %d, want %d", aor, rec.due, due)
		}
		if slot := l.wheel[due%wheelSize]; int(rec.pos) >= len(slot) || slot[rec.pos] != rec {
			t.Fatalf("%s: not at its place in slot %d", aor, due%wheelSize)
		}
	}
	for i := range l.wheel {
		scheduled += len(l.wheel[i])
	}
	if count != l.count || scheduled != len(l.records) {
		t.Fatalf("count %d (kept %d), %d records in the wheel for %d in the map", count, l.count, scheduled, len(l.records))
	}
}

// TestLocationAgainstModel runs random REGISTERs (new, refreshed and
// removed contacts, Contact: *, expiries over more than one turn of the
// wheel) and expiry ticks against a plain model of the bindings: Lookup
// agrees with it and the location's invariants hold throughout.
func TestLocationAgainstModel(t *testing.T) {
	f := newFixture(t, nil, func(c *Config, _ *Env) { c.MaxExpires = 20000 })
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[string]map[string]time.Time{} // AOR → contact URI → expiry
	cseq := map[string]uint32{}
	users := []string{"alice", "bob", "carol", "dave", "erin"}
	for step := range 3000 {
		user := users[rng.IntN(len(users))]
		aor := user + "@example.test"
		g := reg{to: "sip:" + aor}
		now := f.clock.Now()
		if rng.IntN(20) == 0 {
			g.contacts, g.expires = []string{"*"}, "0"
			delete(model, aor)
		} else {
			for range 1 + rng.IntN(2) {
				uri := fmt.Sprintf("sip:%s@198.51.100.%d", user, rng.IntN(4))
				exp := []int{0, 10, 60, 3600, 4096, 4106, 7696, 9000, 20000}[rng.IntN(9)]
				g.contacts = append(g.contacts, fmt.Sprintf("<%s>;expires=%d", uri, exp))
				if model[aor] == nil {
					model[aor] = map[string]time.Time{}
				}
				if exp == 0 {
					delete(model[aor], uri)
				} else {
					model[aor][uri] = now.Add(time.Duration(exp) * time.Second)
				}
			}
		}
		cseq[aor]++
		if res := f.send(t, g, cseq[aor]); res.StatusCode != 200 {
			t.Fatalf("step %d: %d %s", step, res.StatusCode, res.Get("Warning"))
		}
		switch rng.IntN(10) {
		case 0:
			f.clock.Add(time.Duration(rng.IntN(6000)) * time.Second)
		case 1, 2, 3:
			f.clock.Add(time.Duration(rng.IntN(120_000)) * time.Millisecond)
		}
		if rng.IntN(3) == 0 {
			f.r.loc.expire(f.clock.Now(), nil)
		}
		now = f.clock.Now()
		for _, u := range users {
			var want []string
			for uri, exp := range model[u+"@example.test"] {
				if exp.After(now) {
					want = append(want, uri)
				}
			}
			var got []string
			for _, b := range f.r.Lookup(u + "@example.test") {
				got = append(got, b.Contact.URI.String())
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: Lookup(%s) = %v, want %v", step, u, got, want)
			}
		}
		checkLocation(t, f.r.loc)
	}
}

// TestStoredRowNAT: a row read back keeps its NAT flag, and one without it
// (written before the flag was stored) gets what its Contact and source
// show.
func TestStoredRowNAT(t *testing.T) {
	row := store.Binding{
		AOR: "alice@example.test", ID: "0123456789abcdef", Q: 1000, Expires: t0.Add(time.Hour), CallID: "c",
		Source: "198.51.100.7:40000", Local: "192.0.2.10:5060", Transport: "UDP", Updated: t0,
	}
	for _, tt := range []struct {
		contact string
		stored  bool
		want    bool
	}{
		{"<sip:alice@198.51.100.7:5060>", false, false},
		{"<sip:alice@198.51.100.7:5060>", true, true},
		{"<sip:alice@192.168.1.20:5060>", false, true},
		{"<sip:alice@phone.example.test>", false, false},
	} {
		row.Contact, row.NAT = tt.contact, tt.stored
		b, err := fromStore(&row)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.export().NAT; got != tt.want {
			t.Errorf("%s stored with NAT %v: NAT %v, want %v", tt.contact, tt.stored, got, tt.want)
		}
		if got := b.toStore().NAT; got != tt.want {
			t.Errorf("%s stored with NAT %v: written back with NAT %v, want %v", tt.contact, tt.stored, got, tt.want)
		}
	}
}
