package proxy

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/sip"
)

// requestHashFNV is requestHash as hash/fnv computes it, which the
// allocation-free version must match (branches already on the wire, and
// loop detection across a restart of one version to the other, compare
// it).
func requestHashFNV(p *Proxy, req *sip.Request, top *sip.Via) string {
	h := fnv.New64a()
	var salt [8]byte
	binary.LittleEndian.PutUint64(salt[:], p.salt)
	h.Write(salt[:])
	sep := []byte{0}
	if top != nil {
		b := top.Branch()
		h.Write([]byte(strings.ToLower(top.Host)))
		h.Write([]byte(strconv.Itoa(top.Port)))
		h.Write(sep)
		h.Write([]byte(b))
		if !strings.HasPrefix(b, sip.MagicCookie) {
			h.Write([]byte(top.String()))
		}
	}
	h.Write(sep)
	h.Write(req.URI.AppendTo(nil))
	h.Write(sep)
	h.Write([]byte(req.CallID))
	h.Write(sep)
	h.Write([]byte(req.From.Tag()))
	h.Write(sep)
	h.Write([]byte(strconv.FormatUint(uint64(req.CSeq.Seq), 10)))
	return strconv.FormatUint(h.Sum64(), 36)
}

func TestRequestHashIsFNV1a(t *testing.T) {
	p := &Proxy{salt: 0x0123456789abcdef}
	for _, extra := range [][]string{
		nil,
		{"Via: SIP/2.0/UDP Proxy.Example.TEST:5080;branch=z9hG4bKup1"},
		{"Via: SIP/2.0/TCP [2001:DB8::1];branch=rfc2543-branch;received=192.0.2.9"},
	} {
		req := request(t, sip.INVITE, "sip:carol@example.test;transport=tcp?subject=x")
		if len(extra) > 0 {
			m, err := sip.ParseString(strings.Replace(req.String(), "Via: ", extra[0]+"\r\nVia: ", 1))
			if err != nil {
				t.Fatal(err)
			}
			req = m.(*sip.Request)
		}
		for _, top := range []*sip.Via{nil, &req.Via[0]} {
			var buf [16]byte
			got := string(strconv.AppendUint(buf[:0], p.requestHash(req, top), 36))
			if want := requestHashFNV(p, req, top); got != want {
				t.Errorf("hash of %s over %v: %s, want %s", req.URI.String(), top, got, want)
			}
		}
	}
}

func TestViaBranch(t *testing.T) {
	params, branch := viaBranch(36*36+35, 37)
	if params != ";branch="+branchPrefix+"10z.11" || branch != branchPrefix+"10z.11" {
		t.Errorf("viaBranch = %q, %q", params, branch)
	}
}

// RFC 3261 §16.6: targets of equal q in parallel, lower q after higher
// ones. byQ makes windows of its input when it is in order, and never
// changes it.
func TestByQ(t *testing.T) {
	tq := func(qs ...float64) []Target {
		var ts []Target
		for i, q := range qs {
			ts = append(ts, Target{URI: sip.URI{Scheme: "sip", Host: "h" + strconv.Itoa(i)}, Q: q})
		}
		return ts
	}
	show := func(gs [][]Target) string {
		var s []string
		for _, g := range gs {
			var hs []string
			for _, t := range g {
				hs = append(hs, t.URI.Host)
			}
			s = append(s, strings.Join(hs, "+"))
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		name string
		in   []Target
		want string
	}{
		{"none", nil, ""},
		{"one contact", tq(1), "h0"},
		{"equal q in parallel, in order", tq(0.5, 0.5, 0.5), "h0+h1+h2"},
		{"highest q first, already sorted", tq(1, 0.7, 0.7, 0.1), "h0 h1+h2 h3"},
		{"sorted stably", tq(0.1, 1, 0.7, 1, 0.7), "h1+h3 h2+h4 h0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			gs := byQ(in)
			if got := show(gs); got != tc.want {
				t.Errorf("byQ = %q, want %q", got, tc.want)
			}
			if !slices.EqualFunc(in, tc.in, func(a, b Target) bool { return a.URI == b.URI && a.Q == b.Q }) {
				t.Error("byQ changed its input")
			}
			for _, g := range gs {
				if cap(g) != len(g) {
					t.Errorf("group %s can grow into its neighbour", show([][]Target{g}))
				}
			}
		})
	}
}

func TestHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop what it is given")
	}
	p := tokenProxy("k1")
	req := request(t, sip.INVITE, "sip:carol@example.test")
	req.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "alice", Host: "10.0.0.1", Port: 5060}}}
	in, to := udpFlow("203.0.113.9:40000"), udpFlow("198.51.100.2:41000")
	user := p.flowUser(req, in, to)
	for _, tc := range []struct {
		name string
		max  float64
		f    func()
	}{
		{"request hash", 0, func() { p.hashOf(req) }},
		{"Via branch", 1, func() { viaBranch(p.hashOf(req), 7) }},
		{"flow token made (the user part)", 1, func() { p.flowUser(req, in, to) }},
		{"flow token checked", 0, func() { p.decodeToken(user, req.CallID) }},
		{"static route lookup with a port", 0, func() {
			r := &StaticResolver{Routes: map[string][]Hop{"gw.test:5070": nil}}
			r.route("gw.test", 5070)
		}},
	} {
		if n := testing.AllocsPerRun(100, tc.f); n > tc.max {
			t.Errorf("%s: %v allocations, want at most %v", tc.name, n, tc.max)
		}
	}
}

// orderGateways is the order Forward tries gws in for a call with Call-ID
// key.
func orderGateways(gws []GatewayTarget, key string) []GatewayTarget {
	return appendGatewayOrder(nil, byPriority(gws), key)
}

// orderGatewaysSorted is the gateway order as sort.SliceStable and
// hash/fnv computed it, which Forward must keep: a call's requests and a
// retried call go to the gateways they went to before.
func orderGatewaysSorted(gws []GatewayTarget, key string) []GatewayTarget {
	sorted := append([]GatewayTarget(nil), gws...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Priority < sorted[j].Priority })
	h := fnv.New64a()
	h.Write([]byte(key))
	seed := h.Sum64()
	out := make([]GatewayTarget, 0, len(sorted))
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j].Priority == sorted[i].Priority {
			j++
		}
		group := append([]GatewayTarget(nil), sorted[i:j]...)
		for len(group) > 0 {
			total := 0
			for _, g := range group {
				total += g.Weight
			}
			pick := int(seed % uint64(total))
			seed = seed*6364136223846793005 + 1442695040888963407
			k := 0
			for ; k < len(group); k++ {
				if pick < group[k].Weight {
					break
				}
				pick -= group[k].Weight
			}
			out = append(out, group[k])
			group = append(group[:k], group[k+1:]...)
		}
		i = j
	}
	return out
}

func TestGatewayOrderUnchanged(t *testing.T) {
	gws := []GatewayTarget{
		{URI: sip.URI{Host: "a"}, Priority: 1, Weight: 3}, {URI: sip.URI{Host: "b"}, Weight: 1},
		{URI: sip.URI{Host: "c"}, Priority: 1, Weight: 1}, {URI: sip.URI{Host: "d"}, Weight: 5},
		{URI: sip.URI{Host: "e"}, Priority: 2, Weight: 2}, {URI: sip.URI{Host: "f"}, Weight: 2},
	}
	host := func(gs []GatewayTarget) string {
		var s []string
		for _, g := range gs {
			s = append(s, g.URI.Host)
		}
		return strings.Join(s, "")
	}
	for i := range 2000 {
		key := "call-" + strconv.Itoa(i) + "@198.51.100.7"
		if got, want := host(orderGateways(gws, key)), host(orderGatewaysSorted(gws, key)); got != want {
			t.Fatalf("Call-ID %s: gateways %s, want %s", key, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		var buf [8]GatewayTarget
		appendGatewayOrder(buf[:0], gws, "call-1@198.51.100.7")
	}); n != 0 {
		t.Errorf("ordering %d gateways: %v allocations", len(gws), n)
	}
}
