package acc

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// Columns returns the CSV header and the JSON keys of an exported record,
// a new slice each time (the order is the export's contract).
func Columns() []string {
	return []string{"id", "kind", "status", "call_id", "from_uri", "from_tag", "to_uri", "to_tag", "request_uri",
		"caller", "callee", "user", "source", "user_agent", "start", "answer", "end", "duration", "code", "reason",
		"q850", "q850_text", "ended_by", "end_reason", "branch", "branch_addr"}
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
		r.EndedBy, r.EndReason, r.Branch, r.BranchAddr}
}

// WriteCSV writes records as CSV (RFC 4180) with a header row; duration
// in seconds with milliseconds, times in RFC 3339 UTC.
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
}

// ToJSON converts a record for export.
func ToJSON(r *store.CDR) JSONRecord {
	d, _ := strconv.ParseFloat(durationText(r.Duration), 64)
	return JSONRecord{ID: r.ID, Kind: r.Kind, Status: r.Status, CallID: r.CallID, FromURI: r.FromURI, FromTag: r.FromTag,
		ToURI: r.ToURI, ToTag: r.ToTag, RequestURI: r.RequestURI, Caller: r.Caller, Callee: r.Callee, User: r.User,
		Source: r.Source, UserAgent: r.UserAgent, Start: timeText(r.Start), Answer: timeText(r.Answer), End: timeText(r.End),
		Duration: d, Code: r.Code, Reason: r.Reason, Q850: r.Q850, Q850Text: r.Q850Text, EndedBy: r.EndedBy,
		EndReason: r.EndReason, Branch: r.Branch, BranchAddr: r.BranchAddr}
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
