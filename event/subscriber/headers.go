package subscriber

import (
	"strings"

	"github.com/hlas-voip/hlas/sip"
)

// maxDelta is the largest delta-seconds kept (RFC 3261 §20.19: 2**32-1);
// longer values are taken as this.
const maxDelta = 1<<32 - 1

// maxSubStateLen bounds the Subscription-State value looked at: real ones
// are a few dozen bytes.
const maxSubStateLen = 1024

// subState is a Subscription-State value (RFC 6665 §8.2.3).
type subState struct {
	// state is the substate, lower case: "active", "pending",
	// "terminated" or an extension token.
	state string
	// reason is the event-reason-value, lower case ("" when absent).
	reason string
	// expires and retryAfter are in seconds, -1 when absent.
	expires, retryAfter int64
}

// parseSubState reads a Subscription-State value: the substate token and
// its reason, expires and retry-after parameters (others are skipped).
// A malformed expires or retry-after makes the whole value malformed, as
// acting on half of it could end or keep a subscription wrongly.
func parseSubState(v string) (subState, bool) {
	ss := subState{expires: -1, retryAfter: -1}
	if len(v) > maxSubStateLen {
		return ss, false
	}
	v = strings.TrimSpace(v)
	state, params, _ := strings.Cut(v, ";")
	state = strings.TrimSpace(state)
	if !isToken(state) {
		return ss, false
	}
	ss.state = strings.ToLower(state)
	ok := true
	sip.Params(";" + params).Each(func(name, value string, has bool) bool {
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "reason":
			if !has || !isToken(value) {
				ok = false
			}
			ss.reason = strings.ToLower(value)
		case "expires":
			n, good := parseDelta(value)
			ok = ok && has && good
			ss.expires = n
		case "retry-after":
			n, good := parseDelta(value)
			ok = ok && has && good
			ss.retryAfter = n
		}
		return ok
	})
	if !ok {
		return subState{expires: -1, retryAfter: -1}, false
	}
	return ss, true
}

// parseDelta reads delta-seconds (RFC 3261 §25.1): digits only; values
// beyond 2**32-1 are taken as 2**32-1.
func parseDelta(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta), true
}

// leadingDelta reads the delta-seconds that open a Retry-After value
// ("120 (in a meeting);duration=60", RFC 3261 §20.33); -1 when none.
func leadingDelta(v string) int64 {
	v = strings.TrimSpace(v)
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, ok := parseDelta(v[:end])
	if !ok {
		return -1
	}
	return n
}

// eventType is the event type of an Event header value, without its
// parameters ("" when malformed).
func eventType(v string) string {
	name, _, _ := strings.Cut(v, ";")
	name = strings.TrimSpace(name)
	if !isToken(name) {
		return ""
	}
	return name
}

// isToken reports a non-empty RFC 3261 §25.1 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
