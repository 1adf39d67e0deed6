package resolve

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

func srvRR(prio, weight uint16, target string) *dns.SRV {
	return &dns.SRV{Hdr: dns.RR_Header{Name: "_sip._udp.x.", Rrtype: dns.TypeSRV, Class: dns.ClassINET},
		Priority: prio, Weight: weight, Port: 5060, Target: target}
}

// seqRand returns the given numbers in turn.
type seqRand struct{ n []int }

func (s *seqRand) IntN(n int) int {
	v := s.n[0]
	s.n = s.n[1:]
	return v % n
}

func targetsOf(srvs []*dns.SRV) []string {
	out := make([]string, len(srvs))
	for i, s := range srvs {
		out[i] = s.Target
	}
	return out
}

func TestOrderSRV(t *testing.T) {
	tests := []struct {
		name  string
		in    []*dns.SRV
		picks []int
		want  []string
	}{
		{"RFC 2782 priority: lowest first", []*dns.SRV{srvRR(20, 0, "b."), srvRR(10, 0, "a."), srvRR(30, 0, "c.")},
			[]int{0, 0, 0}, []string{"a.", "b.", "c."}},
		// Weights 10, 30, 60 count 10000, 30000, 60000: running sums
		// 10000, 40000, 100000; a pick of 41000 lands on the third; of the
		// 10 and 30 left, running sums 10000, 40000, a pick of 11000 lands
		// on the second.
		{"RFC 2782 weight: the first running sum above the pick", []*dns.SRV{srvRR(0, 10, "w10."), srvRR(0, 30, "w30."), srvRR(0, 60, "w60.")},
			[]int{41000, 11000, 0}, []string{"w60.", "w30.", "w10."}},
		{"RFC 2782 weight: pick 0 takes the first", []*dns.SRV{srvRR(0, 10, "w10."), srvRR(0, 30, "w30."), srvRR(0, 60, "w60.")},
			[]int{0, 0, 0}, []string{"w10.", "w30.", "w60."}},
		{"RFC 2782 weight: the largest pick takes the last", []*dns.SRV{srvRR(0, 10, "w10."), srvRR(0, 30, "w30."), srvRR(0, 60, "w60.")},
			[]int{99999, 39999, 9999}, []string{"w60.", "w30.", "w10."}},
		{"RFC 2782 weight 0 placed first, chosen by a pick of 0", []*dns.SRV{srvRR(0, 10, "w10."), srvRR(0, 0, "w0.")},
			[]int{0, 0}, []string{"w0.", "w10."}},
		{"RFC 2782 weight 0 after the others otherwise", []*dns.SRV{srvRR(0, 10, "w10."), srvRR(0, 0, "w0.")},
			[]int{1, 0}, []string{"w10.", "w0."}},
		{"RFC 2782 all weights 0", []*dns.SRV{srvRR(0, 0, "a."), srvRR(0, 0, "b.")},
			[]int{0, 0}, []string{"a.", "b."}},
		{"RFC 2782 weights within each priority", []*dns.SRV{srvRR(1, 1, "p1a."), srvRR(0, 1, "p0a."), srvRR(1, 1, "p1b."), srvRR(0, 1, "p0b.")},
			[]int{1000, 0, 1000, 0}, []string{"p0b.", "p0a.", "p1b.", "p1a."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &seqRand{n: slices.Clone(tc.picks)}
			if got := targetsOf(orderSRV(tc.in, r.IntN)); !slices.Equal(got, tc.want) {
				t.Errorf("orderSRV = %v, want %v", got, tc.want)
			}
		})
	}
}

// RFC 2782: among equal priorities a record is chosen first with a
// probability in proportion to its weight. Weights 10/30/60 over 10 000
// resolutions land within two points of 10 %, 30 % and 60 % (the standard
// deviation of the largest share is under half a point), and the seeded
// random source makes the run repeatable.
func TestSRVWeightDistribution(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	r, _ := newResolver(t, srv, Config{Rand: rand.New(rand.NewPCG(3263, 2782))})
	const draws = 10000
	first := map[string]int{}
	for range draws {
		ts, err := r.Resolve(context.Background(), mustURI(t, "sip:alice@weight.test"))
		if err != nil {
			t.Fatal(err)
		}
		t0, _ := ts.Next()
		first[t0.Addr.Addr().String()]++
	}
	for addr, want := range map[string]float64{"192.0.2.81": 0.10, "192.0.2.82": 0.30, "192.0.2.83": 0.60} {
		got := float64(first[addr]) / draws
		if math.Abs(got-want) > 0.02 {
			t.Errorf("%s first in %.3f of draws, want %.2f ± 0.02 (%v)", addr, got, want, first)
		}
	}
	// Small weights 1 and 4 with a weight-0 record: a fifth and four
	// fifths, and the weight-0 record almost never first (1 in 5001).
	small := map[string]int{}
	for range draws {
		ts, err := r.Resolve(context.Background(), mustURI(t, "sip:alice@smallweight.test"))
		if err != nil {
			t.Fatal(err)
		}
		t0, _ := ts.Next()
		small[t0.Addr.Addr().String()]++
	}
	for addr, want := range map[string]float64{"192.0.2.84": 0.20, "192.0.2.85": 0.80} {
		got := float64(small[addr]) / draws
		if math.Abs(got-want) > 0.02 {
			t.Errorf("%s first in %.3f of draws, want %.2f ± 0.02 (%v)", addr, got, want, small)
		}
	}
	if n := small["192.0.2.86"]; n > 10 {
		t.Errorf("the weight-0 record came first %d times in %d", n, draws)
	}
	// The SRV answer came from the cache after the first resolution.
	if n := srv.Queries("_sip._udp.weight.test", dns.TypeSRV); n != 1 {
		t.Errorf("SRV queried %d times, want 1", n)
	}
}
