package acc

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// Columns returns the CSV header and the JSON keys of an exported record,
// a new slice each time (the order is the export's contract).
func Columns() []string {
	return []string{"id", "kind", "status", "call_id", "from_uri", "from_tag", "to_uri", "to_tag", "request_uri",
		"caller", "callee", "user", "source", "user_agent", "start", "answer", "end", "duration", "code", "reason",
		"q850", "q850_text", "ended_by", "end_reason", "branch", "branch_addr", "media_relayed", "media_streams",
		"caller_packets", "caller_bytes", "caller_dropped", "caller_lost", "caller_jitter_ms",
		"callee_packets", "callee_bytes", "callee_dropped", "callee_lost", "callee_jitter_ms"}
}

// timeText is RFC 3339 with milliseconds in UTC, empty for no time.
func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// fields is r in Columns() order, as text.
func fields(r *store.CDR) []string {
	q850 := ""
	if r.Q850 != 0 {
		q850 = strconv.Itoa(r.Q850)
	}
	return []string{r.ID, r.Kind, r.Status, r.CallID, r.FromURI, r.FromTag, r.ToURI, r.ToTag, r.RequestURI,
		r.Caller, r.Callee, r.User, r.Source, r.UserAgent, timeText(r.Start), timeText(r.Answer), timeText(r.End),
		durationText(r.Duration), strconv.Itoa(r.Code), r.Reason, q850, r.Q850Text,
		r.EndedBy, r.EndReason, r.Branch, r.BranchAddr,
		strconv.FormatBool(r.MediaRelayed), strconv.Itoa(r.MediaStreams),
		uintText(r.CallerPackets), uintText(r.CallerBytes), uintText(r.CallerDropped),
		intText(r.CallerLost), jitterText(r.CallerJitterMS),
		uintText(r.CalleePackets), uintText(r.CalleeBytes), uintText(r.CalleeDropped),
		intText(r.CalleeLost), jitterText(r.CalleeJitterMS)}
}

// uintText and intText are counts in decimal.
func uintText(n uint64) string { return strconv.FormatUint(n, 10) }
func intText(n int64) string   { return strconv.FormatInt(n, 10) }

// jitterText is a jitter in milliseconds, as short as it reads back.
func jitterText(ms float64) string {
	return strconv.FormatFloat(ms, 'f', -1, 64)
}

// WriteCSV writes records as CSV (RFC 4180) with a header row; duration
// in seconds with milliseconds, times in RFC 3339 UTC, media_relayed
// true or false (the media columns are 0 when false).
func WriteCSV(w io.Writer, recs []store.CDR) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(Columns()); err != nil {
		return err
	}
	for i := range recs {
		if err := cw.Write(fields(&recs[i])); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// JSONRecord is one exported record as a JSON object (a line of JSON
// Lines): the Columns, with numbers as numbers and empty times left out.
type JSONRecord struct {
	ID         string  `json:"id"`
	Kind       string  `json:"kind"`
	Status     string  `json:"status"`
	CallID     string  `json:"call_id"`
	FromURI    string  `json:"from_uri"`
	FromTag    string  `json:"from_tag"`
	ToURI      string  `json:"to_uri"`
	ToTag      string  `json:"to_tag"`
	RequestURI string  `json:"request_uri"`
	Caller     string  `json:"caller"`
	Callee     string  `json:"callee"`
	User       string  `json:"user"`
	Source     string  `json:"source"`
	UserAgent  string  `json:"user_agent"`
	Start      string  `json:"start"`
	Answer     string  `json:"answer,omitempty"`
	End        string  `json:"end"`
	Duration   float64 `json:"duration"`
	Code       int     `json:"code"`
	Reason     string  `json:"reason"`
	Q850       int     `json:"q850,omitempty"`
	Q850Text   string  `json:"q850_text,omitempty"`
	EndedBy    string  `json:"ended_by"`
	EndReason  string  `json:"end_reason"`
	Branch     string  `json:"branch,omitempty"`
	BranchAddr string  `json:"branch_addr,omitempty"`
	// The media relay's statistics (store.CDR); 0 when MediaRelayed is
	// false.
	MediaRelayed   bool    `json:"media_relayed"`
	MediaStreams   int     `json:"media_streams"`
	CallerPackets  uint64  `json:"caller_packets"`
	CallerBytes    uint64  `json:"caller_bytes"`
	CallerDropped  uint64  `json:"caller_dropped"`
	CallerLost     int64   `json:"caller_lost"`
	CallerJitterMS float64 `json:"caller_jitter_ms"`
	CalleePackets  uint64  `json:"callee_packets"`
	CalleeBytes    uint64  `json:"callee_bytes"`
	CalleeDropped  uint64  `json:"callee_dropped"`
	CalleeLost     int64   `json:"callee_lost"`
	CalleeJitterMS float64 `json:"callee_jitter_ms"`
}

// ToJSON converts a record for export.
func ToJSON(r *store.CDR) JSONRecord {
	d, _ := strconv.ParseFloat(durationText(r.Duration), 64)
	return JSONRecord{ID: r.ID, Kind: r.Kind, Status: r.Status, CallID: r.CallID, FromURI: r.FromURI, FromTag: r.FromTag,
		ToURI: r.ToURI, ToTag: r.ToTag, RequestURI: r.RequestURI, Caller: r.Caller, Callee: r.Callee, User: r.User,
		Source: r.Source, UserAgent: r.UserAgent, Start: timeText(r.Start), Answer: timeText(r.Answer), End: timeText(r.End),
		Duration: d, Code: r.Code, Reason: r.Reason, Q850: r.Q850, Q850Text: r.Q850Text, EndedBy: r.EndedBy,
		EndReason: r.EndReason, Branch: r.Branch, BranchAddr: r.BranchAddr, MediaRelayed: r.MediaRelayed,
		MediaStreams: r.MediaStreams, CallerPackets: r.CallerPackets, CallerBytes: r.CallerBytes,
		CallerDropped: r.CallerDropped, CallerLost: r.CallerLost, CallerJitterMS: finite(r.CallerJitterMS),
		CalleePackets: r.CalleePackets, CalleeBytes: r.CalleeBytes, CalleeDropped: r.CalleeDropped,
		CalleeLost: r.CalleeLost, CalleeJitterMS: finite(r.CalleeJitterMS)}
}

// finite is a jitter JSON can hold: encoding/json refuses NaN and the
// infinities, which would end the export. The store never returns them;
// a record made elsewhere might.
func finite(ms float64) float64 {
	if math.IsNaN(ms) || math.IsInf(ms, 0) {
		return 0
	}
	return ms
}

// WriteJSON writes records as JSON Lines: one object per line.
func WriteJSON(w io.Writer, recs []store.CDR) error {
	enc := json.NewEncoder(w)
	for i := range recs {
		if err := enc.Encode(ToJSON(&recs[i])); err != nil {
			return err
		}
	}
	return nil
}

// durationText is a duration in seconds to the millisecond, as both
// exports write it.
func durationText(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}
