package acc

import (
	"errors"
	"testing"
	"time"
)

func TestParseCDRQuery(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f, err := ParseCDRQuery(CDRQuery{Since: "2h", Until: "2026-03-01T11:30:00Z", User: "alice", Status: "Answered", Kind: "CALL"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Since.Equal(now.Add(-2*time.Hour)) || !f.Until.Equal(now.Add(-30*time.Minute)) || f.User != "alice" ||
		f.Status != StatusAnswered || f.Kind != KindCall || f.Limit != 0 {
		t.Errorf("filter %+v", f)
	}
	if f, err := ParseCDRQuery(CDRQuery{Status: "486", Since: "1900-01-01T00:00:00Z"}, now); err != nil || f.Status != "486" || !f.Since.Equal(time.Unix(0, 0)) {
		t.Errorf("status code and an old since: %+v, %v", f, err)
	}
	for _, c := range []struct {
		q     CDRQuery
		field string
	}{
		{CDRQuery{Since: "yesterday"}, "since"},
		{CDRQuery{Since: "-1h"}, "since"},
		{CDRQuery{Until: "2026-13-01"}, "until"},
		{CDRQuery{Status: "busy"}, "status"},
		{CDRQuery{Status: "99"}, "status"},
		{CDRQuery{Status: "700"}, "status"},
		{CDRQuery{Kind: "fax"}, "kind"},
	} {
		_, err := ParseCDRQuery(c.q, now)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: %v, want an error of field %s", c.q, err, c.field)
		}
	}
}
