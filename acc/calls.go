package acc

import (
	"strings"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// call is one tracked INVITE and, once answered, its dialog. An answered
// call whose BYE never comes is held for Config.MaxDuration (hours), and
// there may be Config.MaxCalls of them, so it keeps only what its record
// needs: the strings in one allocation of their own (text; none points
// into the packet a request or response was parsed from), the times, and
// no timer (one timer serves every call: Accounting.expiring).
type call struct {
	// callID is the key of Accounting.calls: a copy of the INVITE's.
	callID string
	// text holds the record's other strings (the p* fields).
	text packed
	// start is when the INVITE came, answer when its first 2xx went
	// upstream (zero before).
	start, answer time.Time
	// deadline is when an answered call ends without a BYE: the answer +
	// Config.MaxDuration or, when earlier, the session timer's expiry
	// (sessionTimer set: RFC 4028).
	deadline time.Time
	// next is the next call with the same Call-ID (each caller's tag is a
	// dialog of its own, RFC 3261 §12): almost always nil.
	next *call
	// code is the 2xx (200-299) that answered the call.
	code int32
	// idx is the call's position in Accounting.expiring; -1 outside.
	idx          int32
	sessionTimer bool
	recordRoute  bool
	answered     bool
	done         bool
	// shutdown marks a call Close ended.
	shutdown bool
}

// The strings of a tracked call's record that text holds, in the order
// packRecord writes them: the tags first, as lookups read them.
const (
	pFromTag = iota
	pToTag
	pID
	pFromURI
	pToURI
	pRequestURI
	pCaller
	pCallee
	pUser
	pSource
	pUserAgent
	pReason
	pBranch
	pBranchAddr
	pFields
)

// packRecord copies the strings of r a call keeps into one packed text.
func packRecord(r *store.CDR) packed {
	return pack(r.FromTag, r.ToTag, r.ID, r.FromURI, r.ToURI, r.RequestURI, r.Caller, r.Callee, r.User,
		r.Source, r.UserAgent, r.Reason, r.Branch, r.BranchAddr)
}

// newCall starts tracking the call whose record begins as r.
func newCall(r *store.CDR, recordRoute bool) *call {
	return &call{callID: r.CallID, text: packRecord(r), start: r.Start, recordRoute: recordRoute, idx: -1}
}

// record returns c's record as it stands: kind call, answered once a 2xx
// came; the end is the caller's to fill in. Its strings share c's text.
func (c *call) record() store.CDR {
	var f [pFields]string
	c.text.unpack(f[:])
	r := store.CDR{ID: f[pID], Kind: KindCall, CallID: c.callID, FromURI: f[pFromURI], FromTag: f[pFromTag],
		ToURI: f[pToURI], ToTag: f[pToTag], RequestURI: f[pRequestURI], Caller: f[pCaller], Callee: f[pCallee],
		User: f[pUser], Source: f[pSource], UserAgent: f[pUserAgent], Start: c.start, Answer: c.answer,
		Code: int(c.code), Reason: f[pReason], Branch: f[pBranch], BranchAddr: f[pBranchAddr]}
	if c.answered {
		r.Status = StatusAnswered
	}
	return r
}

// tags returns the caller's tag and the callee's (empty before the
// answer).
func (c *call) tags() (from, to string) {
	var f [pToTag + 1]string
	c.text.unpack(f[:])
	return f[pFromTag], f[pToTag]
}

// packed is strings kept in one allocation, each preceded by its length
// as a uvarint (encoding/binary): one allocation instead of one per
// string, and no string header per field.
type packed string

// pack copies fields into a packed text.
func pack(fields ...string) packed {
	n := 0
	for _, s := range fields {
		n += uvarintLen(len(s)) + len(s)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range fields {
		for v := uint(len(s)); ; v >>= 7 {
			if v < 0x80 {
				b.WriteByte(byte(v))
				break
			}
			b.WriteByte(byte(v) | 0x80)
		}
		b.WriteString(s)
	}
	return packed(b.String())
}

// unpack fills f with the first len(f) fields of p; they share p's
// memory.
func (p packed) unpack(f []string) {
	s := string(p)
	for i := range f {
		var n uint
		for shift := 0; ; shift += 7 {
			c := s[0]
			s = s[1:]
			n |= uint(c&0x7f) << shift
			if c < 0x80 {
				break
			}
		}
		f[i], s = s[:n], s[n:]
	}
}

// uvarintLen is the length of n written as a uvarint.
func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// expiryQueue is the answered calls by deadline, earliest first: a
// container/heap keeping each call's idx.
type expiryQueue []*call

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].deadline.Before(q[j].deadline) }
func (q expiryQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = int32(i), int32(j)
}

func (q *expiryQueue) Push(x any) {
	c := x.(*call)
	c.idx = int32(len(*q))
	*q = append(*q, c)
}

func (q *expiryQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	c.idx = -1
	return c
}
