package acc

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/store"
)

// relayed is what a relay reports of a call: counters of each side, the
// other side's RTCP view of them.
var relayed = media.Stats{
	Caller:   media.Direction{Packets: 3000, Bytes: 516000, Dropped: 4, Lost: 12, JitterMS: 2.5},
	Callee:   media.Direction{Packets: 2990, Bytes: 514280, Dropped: 0, Lost: -1, JitterMS: 17.125},
	Streams:  1,
	Duration: time.Minute,
}

// wantMedia checks that r carries st.
func wantMedia(t *testing.T, r store.CDR, st media.Stats) {
	t.Helper()
	got := media.Stats{Streams: r.MediaStreams, Duration: st.Duration,
		Caller: media.Direction{Packets: r.CallerPackets, Bytes: r.CallerBytes, Dropped: r.CallerDropped,
			Lost: r.CallerLost, JitterMS: r.CallerJitterMS},
		Callee: media.Direction{Packets: r.CalleePackets, Bytes: r.CalleeBytes, Dropped: r.CalleeDropped,
			Lost: r.CalleeLost, JitterMS: r.CalleeJitterMS}}
	if !r.MediaRelayed || got != st {
		t.Fatalf("record %s: relayed %v, media %+v; want %+v", r.CallID, r.MediaRelayed, got, st)
	}
}

// noMedia checks that r says its media was not relayed.
func noMedia(t *testing.T, r store.CDR) {
	t.Helper()
	if r.MediaRelayed || r.MediaStreams != 0 || r.CallerPackets != 0 || r.CallerBytes != 0 || r.CallerDropped != 0 ||
		r.CallerLost != 0 || r.CallerJitterMS != 0 || r.CalleePackets != 0 || r.CalleeBytes != 0 ||
		r.CalleeDropped != 0 || r.CalleeLost != 0 || r.CalleeJitterMS != 0 {
		t.Fatalf("record %s has media: %+v", r.CallID, r)
	}
}

// mediaEntries is how many calls' statistics a holds.
func mediaEntries(a *Accounting) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.media)
}

// The proxy reports a relayed call's media statistics when the relaying
// ends, before what completes the record; each way of ending puts them
// in the record, in the order the proxy calls.
func TestMediaStatsInRecord(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// end ends the call c, reporting st to the accounting as the
		// proxy does, and returns the record's expected status and end
		// reason.
		end func(t *testing.T, f *fixture, c string, st media.Stats) (status, reason string)
	}{
		{"BYE: stats when the BYE is forwarded, the record at its final response", func(t *testing.T, f *fixture, c string, st media.Stats) (string, string) {
			f.answer(t, c, time.Second)
			bye := request(t, "BYE", c, "b1", false)
			obs := f.a.Forwarding(ctx, bye, caller)
			f.a.MediaStats(c, st)
			f.clock.Advance(time.Second)
			respond(t, obs, response(bye, 200, ""), bobPhone)
			return StatusAnswered, EndBye
		}},
		{"BYE of the callee", func(t *testing.T, f *fixture, c string, st media.Stats) (string, string) {
			f.answer(t, c, time.Second)
			bye := request(t, "BYE", c, "b1", true)
			obs := f.a.Forwarding(ctx, bye, caller)
			f.a.MediaStats(c, st)
			respond(t, obs, response(bye, 200, ""), bobPhone)
			return StatusAnswered, EndBye
		}},
		{"media timeout: stats, then EndCall", func(t *testing.T, f *fixture, c string, st media.Stats) (string, string) {
			f.answer(t, c, time.Second)
			f.a.MediaStats(c, st)
			if !f.a.EndCall(proxy.CallEnd{CallID: c, CallerTag: "a1", CalleeTag: "b1", Why: EndMediaTimeout}) {
				t.Fatal("EndCall found no call")
			}
			return StatusAnswered, EndMediaTimeout
		}},
		{"failed INVITE: stats before the final response", func(t *testing.T, f *fixture, c string, st media.Stats) (string, string) {
			inv := request(t, "INVITE", c, "", false)
			obs := f.a.Forwarding(ctx, inv, caller)
			f.a.MediaStats(c, st)
			respond(t, obs, response(inv, 486, "b1"), bobPhone)
			return StatusFailed, EndRejected
		}},
		{"cancelled INVITE", func(t *testing.T, f *fixture, c string, st media.Stats) (string, string) {
			inv := request(t, "INVITE", c, "", false)
			obs := f.a.Forwarding(ctx, inv, caller)
			f.a.MediaStats(c, st)
			respond(t, obs, response(inv, 487, "b1"), proxy.Upstream{Cancelled: true})
			return StatusCancelled, EndCancel
		}},
		{"shutdown of an answered call", func(t *testing.T, f *fixture, c string, st media.Stats) (string, string) {
			f.answer(t, c, time.Second)
			f.a.MediaStats(c, st)
			f.a.Close()
			return StatusAnswered, EndShutdown
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			status, reason := tc.end(t, f, "m1", relayed)
			r := f.st.waitRecords(t, 1)[0]
			if r.CallID != "m1" || r.Status != status || r.EndReason != reason {
				t.Fatalf("record %+v; want status %s, end reason %s", r, status, reason)
			}
			wantMedia(t, r, relayed)
			if n := mediaEntries(f.a); n != 0 {
				t.Fatalf("%d calls' media statistics kept after their records", n)
			}
		})
	}
}

// A call whose media was not relayed says so, and a report for a call
// not tracked changes nothing.
func TestMediaStatsOnlyForTrackedCalls(t *testing.T) {
	f := newFixture(t, Config{})
	f.a.MediaStats("nobody", relayed) // never tracked
	f.answer(t, "direct", 0)
	bye := request(t, "BYE", "direct", "b1", false)
	respond(t, f.a.Forwarding(context.Background(), bye, caller), response(bye, 200, ""), bobPhone)
	r := f.st.waitRecords(t, 1)[0]
	noMedia(t, r)
	// Reported after the record: the call is no longer tracked.
	f.a.MediaStats("direct", relayed)
	if n := mediaEntries(f.a); n != 0 {
		t.Fatalf("%d calls' media statistics kept for calls not tracked", n)
	}
}

// A digest challenge from downstream ends the attempt without a record:
// its statistics go with it, and the retry's record has the retry's.
func TestMediaStatsOfAChallengedAttempt(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	inv := request(t, "INVITE", "m2", "", false)
	obs := f.a.Forwarding(ctx, inv, caller)
	f.a.MediaStats("m2", media.Stats{Streams: 1, Caller: media.Direction{Packets: 5}})
	respond(t, obs, response(inv, 407, "gw"), bobPhone)
	if n := mediaEntries(f.a); n != 0 {
		t.Fatalf("%d calls' media statistics kept after a challenge", n)
	}
	retry := request(t, "INVITE", "m2", "", false)
	obs = f.a.Forwarding(ctx, retry, caller)
	retried := media.Stats{Streams: 1}
	f.a.MediaStats("m2", retried)
	respond(t, obs, response(retry, 480, "b1"), bobPhone)
	wantMedia(t, f.st.waitRecords(t, 1)[0], retried)
}

// The relay knows a call by its Call-ID alone. Of two calls sharing one
// (two From tags), the answered one gets the statistics; the other's
// record has none.
func TestMediaStatsGoToTheAnsweredCallOfACallID(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	f.answer(t, "m3", 0)
	other := request(t, "INVITE", "m3", "", false)
	other.From.Params = other.From.Params.Set("tag", "a2")
	obs := f.a.Forwarding(ctx, other, caller)
	if obs == nil {
		t.Fatal("the second caller's INVITE is not tracked")
	}
	f.a.MediaStats("m3", relayed)
	respond(t, obs, response(other, 486, "c1"), bobPhone)
	noMedia(t, f.st.waitRecords(t, 1)[0])
	bye := request(t, "BYE", "m3", "b1", false)
	respond(t, f.a.Forwarding(ctx, bye, caller), response(bye, 200, ""), bobPhone)
	recs := f.st.waitRecords(t, 2)
	if recs[1].FromTag != "a1" {
		t.Fatalf("second record %+v", recs[1])
	}
	wantMedia(t, recs[1], relayed)
}

// The exports carry the media columns after the others: true and the
// counts for a relayed call, false and zeros for one that was not.
func TestExportMedia(t *testing.T) {
	rel := store.CDR{ID: "1", Kind: KindCall, Status: StatusAnswered, CallID: "r", Start: t0, MediaRelayed: true,
		MediaStreams: 2, CallerPackets: 3000, CallerBytes: 516000, CallerDropped: 4, CallerLost: 12, CallerJitterMS: 2.5,
		CalleePackets: 2990, CalleeBytes: 514280, CalleeLost: -1, CalleeJitterMS: 17.125}
	direct := store.CDR{ID: "2", Kind: KindCall, Status: StatusAnswered, CallID: "d", Start: t0}
	cols := Columns()
	wantCols := []string{"media_relayed", "media_streams", "caller_packets", "caller_bytes", "caller_dropped",
		"caller_lost", "caller_jitter_ms", "callee_packets", "callee_bytes", "callee_dropped", "callee_lost",
		"callee_jitter_ms"}
	if tail := cols[len(cols)-len(wantCols):]; strings.Join(tail, ",") != strings.Join(wantCols, ",") {
		t.Fatalf("last columns %v, want %v", tail, wantCols)
	}
	var csv strings.Builder
	if err := WriteCSV(&csv, []store.CDR{rel, direct}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(csv.String()), "\n")
	for i, want := range []string{
		strings.Join(wantCols, ","),
		"true,2,3000,516000,4,12,2.5,2990,514280,0,-1,17.125",
		"false,0,0,0,0,0,0,0,0,0,0,0",
	} {
		if !strings.HasSuffix(lines[i], ","+want) {
			t.Errorf("CSV line %d: %q, want it to end with %q", i, lines[i], want)
		}
	}
	// JSON: the same names, numbers as numbers.
	var js strings.Builder
	nan := rel
	nan.CalleeJitterMS = math.NaN() // not from the store; the export must not fail on it
	if err := WriteJSON(&js, []store.CDR{rel, nan}); err != nil {
		t.Fatal(err)
	}
	objs := strings.Split(strings.TrimSpace(js.String()), "\n")
	var obj map[string]any
	if err := json.Unmarshal([]byte(objs[0]), &obj); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"media_relayed": true, "media_streams": 2.0, "caller_packets": 3000.0,
		"caller_bytes": 516000.0, "caller_dropped": 4.0, "caller_lost": 12.0, "caller_jitter_ms": 2.5,
		"callee_packets": 2990.0, "callee_bytes": 514280.0, "callee_dropped": 0.0, "callee_lost": -1.0,
		"callee_jitter_ms": 17.125} {
		if obj[k] != want {
			t.Errorf("JSON %s = %v, want %v", k, obj[k], want)
		}
	}
	if !strings.Contains(objs[1], `"callee_jitter_ms":0}`) {
		t.Errorf("JSON of a NaN jitter: %s", objs[1])
	}
}
