package store

import (
	"context"
	"testing"
	"time"
)

// TestCDRs runs the call detail record suite against every back end.
func TestCDRs(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { testCDRs(t, open(t)) })
	}
}

func testCDRs(t *testing.T, s Store) {
	ctx := context.Background()
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	answered := CDR{ID: "r1", Kind: "call", Status: "answered", CallID: "c1@host", FromURI: "sip:alice@example.test",
		FromTag: "a1", ToURI: "sip:bob@example.test", ToTag: "b1", RequestURI: "sip:bob@example.test",
		Caller: "alice@example.test", Callee: "bob@example.test", User: "alice@example.test", Source: "udp:192.0.2.1:5060",
		UserAgent: "phone/1.0 'quoted' \"x\"", Start: t0.Add(123 * time.Millisecond), Answer: t0.Add(3 * time.Second),
		End: t0.Add(63 * time.Second), Duration: 60 * time.Second, Code: 200, Reason: "OK", Q850: 16,
		Q850Text: "Normal call clearing", EndedBy: "callee", EndReason: "bye", Branch: "sip:bob@192.0.2.2:5062",
		BranchAddr: "udp:192.0.2.2:5062"}
	busy := CDR{ID: "r2", Kind: "call", Status: "failed", CallID: "c2", Caller: "carol@example.test", Callee: "alice@other.test",
		Start: t0.Add(time.Minute), End: t0.Add(time.Minute + time.Second), Code: 486, Reason: "Busy Here", EndedBy: "callee", EndReason: "rejected"}
	cancelled := CDR{ID: "r3", Kind: "call", Status: "cancelled", CallID: "c3", Caller: "bob@example.test", Callee: "dave@example.test",
		Start: t0.Add(2 * time.Minute), End: t0.Add(2*time.Minute + time.Second), Code: 487, EndedBy: "caller", EndReason: "cancel"}
	reg := CDR{ID: "r4", Kind: "register", Status: "failed", CallID: "c4", Caller: "eve@example.test", Callee: "eve@example.test",
		Start: t0.Add(3 * time.Minute), End: t0.Add(3 * time.Minute), Code: 403}
	if err := s.WriteCDRs(ctx, []CDR{answered, busy}); err != nil {
		t.Fatal(err)
	}
	// A batch retried after an unclear commit keeps one row per record.
	if err := s.WriteCDRs(ctx, []CDR{busy, cancelled, reg}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteCDRs(ctx, []CDR{{CallID: "x"}}); err == nil {
		t.Fatal("a record without an ID was written")
	}
	all, err := s.CDRs(ctx, CDRFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("%d records, want 4", len(all))
	}
	got := all[0]
	if !got.Start.Equal(answered.Start) || !got.Answer.Equal(answered.Answer) || !got.End.Equal(answered.End) {
		t.Fatalf("times: %+v", got)
	}
	got.Start, got.Answer, got.End = answered.Start, answered.Answer, answered.End
	if got != answered {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, answered)
	}
	if !all[1].Answer.IsZero() {
		t.Fatalf("unanswered call has an answer time: %v", all[1].Answer)
	}
	for _, tc := range []struct {
		name string
		f    CDRFilter
		want []string
	}{
		{"since", CDRFilter{Since: t0.Add(time.Minute)}, []string{"r2", "r3", "r4"}},
		{"until", CDRFilter{Until: t0.Add(time.Minute)}, []string{"r1"}},
		{"user as AOR: authenticated user or caller", CDRFilter{User: "alice@example.test"}, []string{"r1"}},
		{"user part in any domain", CDRFilter{User: "alice"}, []string{"r1", "r2"}},
		{"status", CDRFilter{Status: "cancelled"}, []string{"r3"}},
		{"status code", CDRFilter{Status: "486"}, []string{"r2"}},
		{"kind", CDRFilter{Kind: "register"}, []string{"r4"}},
		{"limit", CDRFilter{Limit: 2}, []string{"r1", "r2"}},
		{"combined", CDRFilter{User: "bob", Status: "failed"}, nil},
	} {
		rs, err := s.CDRs(ctx, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		if len(ids) != len(tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, ids, tc.want)
		}
		for i := range ids {
			if ids[i] != tc.want[i] {
				t.Fatalf("%s: %v, want %v", tc.name, ids, tc.want)
			}
		}
	}
}
