package registrar

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// sippTx is the transaction of a REGISTER that came over UDP like sipp's:
// source and local addresses, answered and forgotten.
type sippTx struct{ src, local netip.AddrPort }

func (sippTx) Respond(*sip.Response) error          { return nil }
func (t sippTx) Source() netip.AddrPort             { return t.src }
func (sippTx) Transport() string                    { return "UDP" }
func (t sippTx) LocalAddr() netip.AddrPort          { return t.local }
func (sippTx) RespondStateless(*sip.Response) error { return nil }

// sippRegister returns the i-th REGISTER of a sipp-like load: its own AOR
// user<i>@example.test, one contact, a 40-character Call-ID and a
// 20-character User-Agent, and the transaction it came in on.
func sippRegister(tb testing.TB, i int, buf []byte) (*sip.Request, sippTx) {
	tb.Helper()
	user := fmt.Sprintf("user%06d", i)
	buf = buf[:0]
	buf = fmt.Appendf(buf, "REGISTER sip:192.0.2.10:5060 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 198.51.100.7:%d;branch=z9hG4bK-%d-1-0\r\n"+
		"From: <sip:%s@192.0.2.10:5060>;tag=%d\r\n"+
		"To: <sip:%s@192.0.2.10:5060>\r\n"+
		"Call-ID: %d-%06d@198.51.100.7-abcdefghijklmnop\r\n"+
		"CSeq: 1 REGISTER\r\n"+
		"Contact: <sip:%s@198.51.100.7:%d;transport=udp>\r\n"+
		"Max-Forwards: 70\r\n"+
		"Expires: 3600\r\n"+
		"User-Agent: sipp-3.7.1-loadtester\r\n"+
		"Content-Length: 0\r\n\r\n",
		5060+i%1000, i, user, i, user, 1000000+i, i, user, 5060+i%1000)
	m, err := sip.Parse(buf)
	if err != nil {
		tb.Fatal(err)
	}
	return m.(*sip.Request), sippTx{
		src:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, 7}), uint16(5060+i%1000)),
		local: netip.MustParseAddrPort("192.0.2.10:5060"),
	}
}

// heapUse is the live heap after a collection.
type heapUse struct{ bytes, objects uint64 }

func liveHeap() heapUse {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return heapUse{ms.HeapAlloc, ms.HeapObjects}
}

// registerMany registers n sipp-like AORs through ServeRegister and
// returns the live heap they cost, per binding.
func registerMany(tb testing.TB, r *Registrar, n int) (bytesPer, objectsPer float64) {
	tb.Helper()
	buf := make([]byte, 0, 1024)
	before := liveHeap()
	for i := range n {
		req, tx := sippRegister(tb, i, buf)
		r.ServeRegister(context.Background(), tx, req)
	}
	after := liveHeap()
	if _, got := r.loc.stats(); got != n {
		tb.Fatalf("%d bindings, want %d", got, n)
	}
	runtime.KeepAlive(r)
	return float64(int64(after.bytes-before.bytes)) / float64(n), float64(int64(after.objects-before.objects)) / float64(n)
}

// TestMemoryPerBinding bounds what one registered contact costs in live
// heap and in heap objects (each one more for the GC to mark). A million
// contacts must fit in about 1 KiB of RSS each, and the GC's headroom
// doubles the live heap.
func TestMemoryPerBinding(t *testing.T) {
	r, err := New(context.Background(), Config{}, Env{Domain: domains, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	n := 20000
	if testing.Short() {
		n = 5000
	}
	bytesPer, objectsPer := registerMany(t, r, n)
	t.Logf("%d bindings: %.0f B and %.2f heap objects per binding", n, bytesPer, objectsPer)
	// Before the compact representation: ~700 B and 8 objects; with it
	// ~325 B and 2.
	if bytesPer > 450 {
		t.Errorf("%.0f B of live heap per binding, want at most 450", bytesPer)
	}
	if objectsPer > 3 {
		t.Errorf("%.2f heap objects per binding, want at most 3", objectsPer)
	}
}

// BenchmarkMemoryPerBinding reports the live heap of 200 000 registered
// sipp-like AORs.
func BenchmarkMemoryPerBinding(b *testing.B) {
	for range b.N {
		r, err := New(context.Background(), Config{}, Env{Domain: domains, Now: func() time.Time { return t0 }})
		if err != nil {
			b.Fatal(err)
		}
		bytesPer, objectsPer := registerMany(b, r, 200000)
		b.ReportMetric(bytesPer, "B/binding")
		b.ReportMetric(objectsPer, "objects/binding")
	}
}

// sippRows returns n stored bindings as a sipp load leaves them.
func sippRows(n int) []store.Binding {
	rows := make([]store.Binding, n)
	for i := range rows {
		user := fmt.Sprintf("user%06d", i)
		port := strconv.Itoa(5060 + i%1000)
		rows[i] = store.Binding{
			AOR: user + "@example.test", ID: fmt.Sprintf("%016x", 0xabcdef0000+i),
			Contact: "<sip:" + user + "@198.51.100.7:" + port + ";transport=udp>",
			Q:       1000, Expires: t0.Add(time.Hour), CallID: fmt.Sprintf("%d-%06d@198.51.100.7-abcdefghijklmnop", 1000000+i, i),
			CSeq: 1, Source: "198.51.100.7:" + port, Local: "192.0.2.10:5060", Transport: "UDP",
			UserAgent: "sipp-3.7.1-loadtester", Updated: t0,
		}
	}
	return rows
}

// rowStore is a store that has rows and takes no writes.
type rowStore struct{ rows []store.Binding }

func (s rowStore) WriteBindings(context.Context, []store.Binding, []store.BindingKey) error {
	return nil
}
func (s rowStore) PurgeBindings(context.Context, time.Time) (int64, error) { return 0, nil }
func (s rowStore) Bindings(context.Context, string, time.Time) ([]store.Binding, error) {
	return s.rows, nil
}

// BenchmarkLoadRows measures the registrar's share of loading 200 000
// bindings: the rows come from memory.
func BenchmarkLoadRows(b *testing.B) {
	st := rowStore{rows: sippRows(200000)}
	b.ResetTimer()
	for range b.N {
		r, err := New(context.Background(), Config{}, Env{Domain: domains, Store: st, Now: func() time.Time { return t0 }})
		if err != nil {
			b.Fatal(err)
		}
		if _, n := r.loc.stats(); n != len(st.rows) {
			b.Fatalf("%d bindings loaded", n)
		}
	}
}

// BenchmarkLoad measures New loading 200 000 bindings from the embedded
// store after a restart, and the live heap they take: s/load is all of
// New, s/store the store's share (PurgeBindings and Bindings alone).
func BenchmarkLoad(b *testing.B) {
	const n = 200000
	dir := b.TempDir()
	ctx := context.Background()
	open := func() store.Store {
		st, err := store.Open(ctx, store.Config{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	st := open()
	rows := sippRows(n)
	for i := 0; i < n; i += 10000 {
		if err := st.WriteBindings(ctx, rows[i:i+10000], nil); err != nil {
			b.Fatal(err)
		}
	}
	rows = nil
	if err := st.Close(); err != nil { // a clean stop checkpoints the journal
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		st := open()
		start := time.Now()
		if _, err := st.PurgeBindings(ctx, t0); err != nil {
			b.Fatal(err)
		}
		rows, err := st.Bindings(ctx, "", t0)
		if err != nil || len(rows) != n {
			b.Fatalf("%d rows, %v", len(rows), err)
		}
		storeTime := time.Since(start)
		rows = nil
		before := liveHeap()
		start = time.Now()
		r, err := New(ctx, Config{}, Env{Domain: domains, Store: st, Now: func() time.Time { return t0 }})
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		after := liveHeap()
		if _, got := r.loc.stats(); got != n {
			b.Fatalf("%d bindings loaded, want %d", got, n)
		}
		b.ReportMetric(d.Seconds(), "s/load")
		b.ReportMetric(storeTime.Seconds(), "s/store")
		b.ReportMetric(float64(int64(after.bytes-before.bytes))/n, "B/binding")
		b.ReportMetric(float64(int64(after.objects-before.objects))/n, "objects/binding")
		r.Close()
		st.Close()
	}
}

// BenchmarkLookup measures the location service's answer for one
// registered AOR, as the proxy asks it for every call.
func BenchmarkLookup(b *testing.B) {
	r, err := New(context.Background(), Config{}, Env{Domain: domains, Now: func() time.Time { return t0 }})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	for i := range 1000 {
		req, tx := sippRegister(b, i, buf)
		r.ServeRegister(context.Background(), tx, req)
	}
	aors := make([]string, 1000)
	for i := range aors {
		aors[i] = fmt.Sprintf("user%06d@example.test", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if bs := r.Lookup(aors[i%len(aors)]); len(bs) != 1 || bs[0].Contact.URI.Host != "198.51.100.7" {
			b.Fatalf("Lookup = %+v", bs)
		}
	}
}
