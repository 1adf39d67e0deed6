package registrar

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// TestNATEvidence: what a REGISTER's top Via and Contact say about a NAT
// between the UA and the server, as Binding.NAT records it.
func TestNATEvidence(t *testing.T) {
	const src = "198.51.100.7:40000"
	tests := []struct {
		name    string
		source  string // default src
		via     string // top Via sent-by
		contact string
		want    bool
	}{
		{name: "RFC 3581: the Via names the address behind the NAT", via: "10.0.0.5:5060", contact: "<sip:a@10.0.0.5:5060>", want: true},
		{name: "a public UA: Via and Contact are the source", via: src, contact: "<sip:a@198.51.100.7:40000>"},
		{name: "sipsak: the source address, another port to listen on", via: "198.51.100.7:42243", contact: "<sip:a@198.51.100.7:42243>"},
		{name: "a third-party registration: a public Contact elsewhere", via: src, contact: "<sip:a@203.0.113.9:5060>"},
		{name: "a Contact host name", via: src, contact: "<sip:a@phone.example.test>"},
		{name: "a private Contact behind a public Via", via: src, contact: "<sip:a@192.168.1.20:5060>", want: true},
		{name: "a private Contact from that address: the server's LAN", source: "192.168.1.20:5060", via: "192.168.1.20:5060", contact: "<sip:a@192.168.1.20:5060>"},
		{name: "RFC 6598 shared address space (carrier-grade NAT)", via: src, contact: "<sip:a@100.64.3.4>", want: true},
		{name: "an IPv6 link-local Contact", source: "[2001:db8::7]:5060", via: "[2001:db8::7]:5060", contact: "<sip:a@[fe80::1]:5060>", want: true},
		{name: "an IPv6 unique local Contact (RFC 4193)", source: "[2001:db8::7]:5060", via: "[2001:db8::7]:5060", contact: "<sip:a@[fd00::5]>", want: true},
		{name: "a loopback Contact from elsewhere", via: src, contact: "<sip:a@127.0.0.1:5060>", want: true},
		{name: "RFC 6761 .invalid, as WebRTC clients make up", via: src, contact: "<sip:a@df7jal23ls0d.invalid>", want: true},
		{name: "a Via host name", via: "phone.example.test:5060", contact: "<sip:a@198.51.100.7:5060>"},
		{name: "an IPv4-mapped source", source: "[::ffff:198.51.100.7]:40000", via: "198.51.100.7:40000", contact: "<sip:a@198.51.100.7:40000>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil, nil)
			tx := newTx()
			if tt.source != "" {
				tx.src = netip.MustParseAddrPort(tt.source)
			} else {
				tx.src = netip.MustParseAddrPort(src)
			}
			f.r.ServeRegister(context.Background(), tx, f.request(t, reg{via: tt.via, contacts: []string{tt.contact}}, 1))
			if res := tx.wait(t); res.StatusCode != 200 {
				t.Fatalf("got %d %s", res.StatusCode, res.Get("Warning"))
			}
			bs := f.r.Lookup("alice@example.test")
			if len(bs) != 1 {
				t.Fatalf("%d bindings", len(bs))
			}
			if bs[0].NAT != tt.want {
				t.Errorf("NAT = %v, want %v", bs[0].NAT, tt.want)
			}
		})
	}
}

// TestNATRefresh: a refresh from a UA no longer behind a NAT clears the
// flag, and one behind a NAT sets it again.
func TestNATRefresh(t *testing.T) {
	f := newFixture(t, nil, nil)
	for i, tt := range []struct {
		via  string
		want bool
	}{{"10.0.0.5:5060", true}, {"198.51.100.7:40000", false}, {"10.0.0.5:5060", true}} {
		tx := newTx()
		f.r.ServeRegister(context.Background(), tx, f.request(t, reg{via: tt.via, contacts: []string{"<sip:a@198.51.100.7:40000>"}}, uint32(i+1)))
		if res := tx.wait(t); res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
		if bs := f.r.Lookup("alice@example.test"); len(bs) != 1 || bs[0].NAT != tt.want {
			t.Fatalf("REGISTER %d with Via %s: %+v, want NAT %v", i+1, tt.via, bs, tt.want)
		}
	}
}

// TestSweep walks the whole wheel in steps: every live UDP binding comes
// out once, only the NAT ones when asked; stream bindings never.
func TestSweep(t *testing.T) {
	f := newFixture(t, nil, nil)
	want := map[string]bool{} // AOR -> NAT
	for i := range 40 {
		aor := fmt.Sprintf("u%d@example.test", i)
		tx := newTx()
		via := "198.51.100.7:40000"
		if i%3 == 0 {
			via = "10.0.0.5:5060"
		}
		if i%5 == 0 {
			tx.proto = "TCP"
		}
		// Expiries spread over many slots of the wheel.
		contact := fmt.Sprintf("<sip:u%d@198.51.100.7:40000>;expires=%d", i, 60+i*97)
		f.r.ServeRegister(context.Background(), tx, f.request(t, reg{to: "sip:" + aor, via: via, contacts: []string{contact}}, 1))
		if res := tx.wait(t); res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
		if tx.proto == "UDP" {
			want[aor] = i%3 == 0
		}
	}
	for _, natOnly := range []bool{false, true} {
		seen := map[string]int{}
		var out []Binding
		for from, left := 0, SweepSlots; left > 0; {
			n := min(left, 1000)
			var next int
			out, next = f.r.Sweep(out[:0], from, n, natOnly)
			if next != (from+n)%SweepSlots {
				t.Fatalf("Sweep from %d over %d slots returned %d", from, n, next)
			}
			for _, b := range out {
				seen[b.AOR]++
				if b.Transport != "UDP" || (natOnly && !b.NAT) {
					t.Errorf("natOnly %v: swept %+v", natOnly, b)
				}
			}
			from, left = next, left-n
		}
		for aor, nat := range want {
			wantSeen := 1
			if natOnly && !nat {
				wantSeen = 0
			}
			if seen[aor] != wantSeen {
				t.Errorf("natOnly %v: %s (NAT %v) seen %d times, want %d", natOnly, aor, nat, seen[aor], wantSeen)
			}
		}
		for aor := range seen {
			if _, ok := want[aor]; !ok {
				t.Errorf("natOnly %v: swept %s, a stream binding", natOnly, aor)
			}
		}
	}
	// A lapsed binding is not swept, even before the wheel drops it.
	f.clock.Add(5 * time.Hour)
	if out, _ := f.r.Sweep(nil, 0, SweepSlots, false); len(out) != 0 {
		t.Errorf("swept %d lapsed bindings", len(out))
	}
}

// TestRemove removes a binding the way the keep-alive pinger does: not
// when it was refreshed since it was judged, and for good — in the store
// too — when it was not.
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: t0}
	open := func(st store.Store) *Registrar {
		r, err := New(context.Background(), Config{}, Env{Domain: domains, Store: st, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		r.Start()
		return r
	}
	st := openSQLite(t, dir)
	r := open(st)
	f := &fixture{r: r, clock: clock}
	f.send(t, reg{contacts: []string{"<sip:a@198.51.100.7:40000>", "<sip:b@198.51.100.7:40001>"}}, 1)
	bs := r.Lookup("alice@example.test")
	if len(bs) != 2 {
		t.Fatalf("%d bindings", len(bs))
	}
	judged := bs[0]
	if ok, err := r.Remove("alice@example.test", "no-such-id", judged.Updated, "test"); ok || err != nil {
		t.Errorf("Remove of an unknown ID: %v, %v", ok, err)
	}
	if ok, err := r.Remove("bob@example.test", judged.ID, judged.Updated, "test"); ok || err != nil {
		t.Errorf("Remove of an unknown AOR: %v, %v", ok, err)
	}
	// Refreshed after it was judged: it stays.
	clock.Add(time.Second)
	f.send(t, reg{contacts: []string{judged.Contact.String()}}, 2)
	if ok, err := r.Remove("alice@example.test", judged.ID, judged.Updated, "test"); ok || err != nil {
		t.Errorf("Remove of a binding refreshed since: %v, %v", ok, err)
	}
	if len(r.Lookup("alice@example.test")) != 2 {
		t.Fatal("a refreshed binding was removed")
	}
	var fresh Binding
	for _, b := range r.Lookup("alice@example.test") {
		if b.ID == judged.ID {
			fresh = b
		}
	}
	if ok, err := r.Remove("alice@example.test", fresh.ID, fresh.Updated, "test"); !ok || err != nil {
		t.Fatalf("Remove: %v, %v", ok, err)
	}
	left := r.Lookup("alice@example.test")
	if len(left) != 1 || left[0].ID == fresh.ID {
		t.Fatalf("after Remove: %+v", left)
	}
	r.Close()
	st.Close()

	st = openSQLite(t, dir)
	defer st.Close()
	r = open(st)
	defer r.Close()
	if got := r.Lookup("alice@example.test"); len(got) != 1 || got[0].ID != left[0].ID {
		t.Errorf("after a restart: %+v, want only %s", got, left[0].Contact.String())
	}
}

// TestRemoveWithoutStore: a memory-only registrar removes too.
func TestRemoveWithoutStore(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.send(t, reg{contacts: []string{"<sip:a@198.51.100.7:40000>"}}, 1)
	b := f.r.Lookup("alice@example.test")[0]
	if ok, err := f.r.Remove(b.AOR, b.ID, b.Updated, "test"); !ok || err != nil {
		t.Fatalf("Remove: %v, %v", ok, err)
	}
	if got := f.r.Lookup("alice@example.test"); len(got) != 0 {
		t.Errorf("left: %+v", got)
	}
	if aors, n := f.r.loc.stats(); aors != 0 || n != 0 {
		t.Errorf("stats %d AORs, %d bindings; want none", aors, n)
	}
}
