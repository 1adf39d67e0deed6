package store

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzBackend is a store a CDR fuzz target writes to, by name.
type fuzzBackend struct {
	name string
	s    Store
}

// fuzzStores opens the stores the CDR fuzz targets write to: SQLite, and
// PostgreSQL too when HLAS_TEST_POSTGRES is set.
func fuzzStores(f *testing.F) []fuzzBackend {
	var stores []fuzzBackend
	if os.Getenv("HLAS_TEST_POSTGRES") != "" {
		stores = append(stores, fuzzBackend{"postgres", openTestPostgres(f)})
	}
	sq, err := Open(context.Background(), Config{Dir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sq.Close() })
	return append(stores, fuzzBackend{"sqlite", sq})
}

// FuzzCDRRoundTrip writes records whose text comes from the wire (Call-ID,
// tags, User-Agent, reason phrase, Q.850 text, the caller's user part) in
// one batch with an ordinary record, then reads them back: the batch
// commits whatever the bytes (a byte sequence PostgreSQL refuses must not
// take the other records of the batch down with it), text that is valid
// UTF-8 without NUL comes back unchanged, and --user finds the record by
// the caller's user part. It runs on SQLite, and on PostgreSQL too when
// HLAS_TEST_POSTGRES is set.
func FuzzCDRRoundTrip(f *testing.F) {
	f.Add("c1@host", "alice", "phone/1.0", "Busy Here", "Normal call clearing")
	f.Add("c\xff1", "j\xc3\xbcrgen", "ua\x00x", "\xfe", "text \"quoted\"")
	f.Add("c2", "jürgen", "Ünïcödé/1.0", "Bésetzt", "日本語")
	f.Add("c3", "%61lice", "", "", "")
	ctx := context.Background()
	stores := fuzzStores(f)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, callID, user, userAgent, reason, q850Text string) {
		i := n.Add(1)
		start := t0.Add(time.Duration(i) * time.Second)
		id := "f" + time.Duration(i).String()
		rec := CDR{ID: id, Kind: "call", Status: "failed", CallID: callID, FromURI: "sip:" + user + "@example.test",
			FromTag: callID, ToURI: "sip:bob@example.test", ToTag: reason, RequestURI: "sip:bob@example.test",
			Caller: user + "@example.test", Callee: "bob@example.test", User: user + "@example.test",
			Source: "udp:192.0.2.1:5060", UserAgent: userAgent, Start: start, End: start.Add(time.Second),
			Code: 486, Reason: reason, Q850: 17, Q850Text: q850Text, EndedBy: "callee", EndReason: "rejected"}
		other := CDR{ID: id + "-other", Kind: "call", Status: "answered", CallID: "other", Caller: "carol@example.test",
			Callee: "dave@example.test", Start: start.Add(time.Millisecond), Code: 200}
		for _, b := range stores {
			name, s := b.name, b.s
			if err := s.WriteCDRs(ctx, []CDR{rec, other}); err != nil {
				t.Fatalf("%s: write: %v", name, err)
			}
			rs, err := s.CDRs(ctx, CDRFilter{Since: start, Until: start.Add(time.Second)})
			if err != nil {
				t.Fatalf("%s: read: %v", name, err)
			}
			if len(rs) != 2 || rs[0].ID != rec.ID || rs[1].ID != other.ID {
				t.Fatalf("%s: read back %+v", name, rs)
			}
			got := rs[0]
			for _, f := range []struct{ name, in, out string }{
				{"call_id", rec.CallID, got.CallID}, {"from_tag", rec.FromTag, got.FromTag},
				{"caller", rec.Caller, got.Caller}, {"user", rec.User, got.User},
				{"user_agent", rec.UserAgent, got.UserAgent}, {"reason", rec.Reason, got.Reason},
				{"q850_text", rec.Q850Text, got.Q850Text},
			} {
				if !utf8.ValidString(f.out) || strings.IndexByte(f.out, 0) >= 0 {
					t.Fatalf("%s: %s %q stored as %q: not UTF-8 text", name, f.name, f.in, f.out)
				}
				if utf8.ValidString(f.in) && strings.IndexByte(f.in, 0) < 0 && f.in != f.out {
					t.Fatalf("%s: %s %q read back as %q", name, f.name, f.in, f.out)
				}
			}
			// --user with the user part finds the record.
			if user == "" || strings.ContainsAny(user, "@") || !utf8.ValidString(user) || strings.IndexByte(user, 0) >= 0 {
				continue
			}
			rs, err = s.CDRs(ctx, CDRFilter{User: user, Since: start, Until: start.Add(time.Second)})
			if err != nil {
				t.Fatalf("%s: --user %q: %v", name, user, err)
			}
			if len(rs) != 1 || rs[0].ID != rec.ID {
				t.Fatalf("%s: --user %q found %d records", name, user, len(rs))
			}
		}
	})
}
