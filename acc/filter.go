package acc

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// CDRQuery is a record filter as people write it (the flags of `hlas cdr`
// and the query of the REST API's /cdrs), before it is checked.
type CDRQuery struct {
	// Since and Until are RFC 3339 times, dates (local midnight) or
	// durations back from now ("1h"); "" for no bound.
	Since, Until string
	// User, Status and Kind are as store.CDRFilter's.
	User, Status, Kind string
}

// FieldError is a bad value of a named filter field.
type FieldError struct {
	Field string // "since", "status" ...
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ParseCDRQuery checks q and makes the store filter of it, times read
// against now. Its errors are *FieldError.
func ParseCDRQuery(q CDRQuery, now time.Time) (store.CDRFilter, error) {
	f := store.CDRFilter{User: q.User, Status: strings.ToLower(q.Status), Kind: strings.ToLower(q.Kind)}
	var err error
	if f.Since, err = ParseWhen(q.Since, now); err != nil {
		return f, &FieldError{"since", err}
	}
	if f.Until, err = ParseWhen(q.Until, now); err != nil {
		return f, &FieldError{"until", err}
	}
	switch f.Status {
	case "", StatusAnswered, StatusFailed, StatusCancelled:
	default:
		if n, err := strconv.Atoi(f.Status); err != nil || n < 100 || n > 699 {
			return f, &FieldError{"status", fmt.Errorf("%q: want answered, failed, cancelled or a status code", q.Status)}
		}
	}
	switch f.Kind {
	case "", KindCall, KindMessage, KindRegister:
	default:
		return f, &FieldError{"kind", fmt.Errorf("%q: want call, message or register", q.Kind)}
	}
	return f, nil
}

// ParseWhen reads a time: RFC 3339, a date (local midnight), or a
// duration before now; "" is the zero time (no bound). A time before
// 1970 counts as 1970: no record is older, and the zero time would mean
// no bound at all to the store.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t, err = time.ParseInLocation("2006-01-02", s, time.Local)
	}
	if err != nil {
		d, derr := time.ParseDuration(s)
		if derr != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%q: want RFC 3339, YYYY-MM-DD or a duration like 1h", s)
		}
		t = now.Add(-d)
	}
	if epoch := time.Unix(0, 0); t.Before(epoch) {
		t = epoch
	}
	return t, nil
}
