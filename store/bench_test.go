package store

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time the process has used (user and system), so a
// benchmark can report CPU per operation beside wall time: a commit that
// waits on the disk costs wall time but little CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriteBindings measures the registrar's write-through on the
// embedded SQLite database: refreshes of bindings already stored (as a
// REGISTER refresh writes them), committed in batches of the given size
// (the registrar's group commit takes whatever queued during the previous
// commit). "journal" is what the registrar waits for (the append to the
// bindings journal; checkpoints run in the background every second here,
// so their cost is in cpu-ns/op); "table" writes the table directly, as
// every commit did before the journal. ns/op and allocs/op are per
// binding.
func BenchmarkWriteBindings(b *testing.B) {
	for _, tc := range []struct {
		name  string
		batch int
	}{{"journal", 1}, {"journal", 16}, {"table", 1}, {"table", 16}, {"table", 256}} {
		b.Run(fmt.Sprintf("%s/batch=%d", tc.name, tc.batch), func(b *testing.B) {
			batch := tc.batch
			ctx := context.Background()
			st := openSQLiteJournal(b, filepath.Join(b.TempDir(), SQLiteFile), time.Second, 0)
			defer st.Close()
			var s Bindings = st
			if tc.name == "table" {
				s = sqlOf(st)
			}
			const users = 10000
			now := time.Now()
			bs := make([]Binding, users)
			for i := range bs {
				bs[i] = Binding{
					AOR: fmt.Sprintf("user%05d@example.test", i), ID: fmt.Sprintf("%016x", i),
					Contact: fmt.Sprintf("<sip:user%05d@198.51.100.7:5060>", i), Q: 1000,
					Expires: now.Add(time.Hour), CallID: fmt.Sprintf("call-%d@198.51.100.7", i), CSeq: 1,
					Source: "198.51.100.7:5060", Local: "192.0.2.1:5060", Transport: "UDP",
					UserAgent: "bench", Updated: now,
				}
			}
			for i := 0; i < users; i += 1000 {
				if err := s.WriteBindings(ctx, bs[i:i+1000], nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				n := min(batch, b.N-i)
				put := make([]Binding, n)
				for j := range put {
					k := (i + j) * 7919 % users
					bs[k].CSeq++
					bs[k].Expires = bs[k].Expires.Add(time.Second)
					put[j] = bs[k]
				}
				if err := s.WriteBindings(ctx, put, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
