package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Calls is the server's call control behind /api/v1/calls: the calls its
// proxy tracks, hanging them up, and click-to-call.
type Calls interface {
	// List returns the active calls, oldest first.
	List() []Call
	// Get returns the active call with that Call-ID.
	Get(callID string) (Call, bool)
	// Hangup ends the call: HangupBye or HangupCancel, or ErrNoCall.
	Hangup(callID string) (string, error)
	// Originate starts a click-to-call (RFC 3725): from's phones ring,
	// and when one answers it is connected to to. It returns once the
	// first INVITE is on its way; its progress is in the event stream
	// (EventOrigination). An *Error names a refused field.
	Originate(ctx context.Context, from, to string) (Origination, error)
}

// ErrNoCall is Calls.Hangup's error for a call that is not active.
var ErrNoCall = errors.New("api: no such call")

// Hangup actions.
const (
	HangupBye    = "bye"    // answered: a BYE went to each side
	HangupCancel = "cancel" // ringing: the INVITE was cancelled (the caller got 487)
)

// Call is an active call (GET /api/v1/calls).
type Call struct {
	CallID string `json:"call_id"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Source is where the INVITE came from, "udp:192.0.2.1:5060".
	Source string `json:"source,omitempty"`
	// State is "trying", "early" (ringing) or "confirmed" (answered).
	State    string     `json:"state"`
	Started  time.Time  `json:"started"`
	Answered *time.Time `json:"answered,omitempty"`
	// Relayed says the call's media goes through the server's relay.
	Relayed bool `json:"relayed"`
}

// HungUp is the answer to DELETE /api/v1/calls/{call_id}.
type HungUp struct {
	CallID string `json:"call_id"`
	// Action is "bye" or "cancel".
	Action string `json:"action"`
}

// NewCall is the body of POST /api/v1/calls.
type NewCall struct {
	// From is the subscriber whose phones ring first: "alice",
	// "alice@example.test" or a sip: URI.
	From string `json:"from"`
	// To is whom the call connects from to once answered: a
	// subscriber, a number the routing rules know, or a SIP URI.
	To string `json:"to"`
}

// Origination is a click-to-call the server started.
type Origination struct {
	// ID names the origination in its events.
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
	// CallID is the Call-ID of the leg to from (the leg to to gets its
	// own, told in the events).
	CallID string `json:"call_id"`
	State  string `json:"state"`
}

func (a *API) callsOn() error {
	if a.env.Calls == nil {
		return fail(http.StatusNotImplemented, "", "call control is not available")
	}
	return nil
}

func (a *API) listCalls(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "user", "offset", "limit"); err != nil {
		return err
	}
	if err := a.callsOn(); err != nil {
		return err
	}
	p, err := parsePage(r)
	if err != nil {
		return err
	}
	user := bareURI(r.URL.Query().Get("user"))
	all := a.env.Calls.List()
	out := all[:0:0]
	for _, c := range all {
		if user == "" || callOf(c.From, user) || callOf(c.To, user) {
			out = append(out, c)
		}
	}
	return writeJSON(w, http.StatusOK, paged(out, p))
}

// bareURI is s in lower case without its sip: or sips: scheme, as the
// ?user= filter and the calls' URIs are compared.
func bareURI(s string) string {
	s = strings.ToLower(s)
	return strings.TrimPrefix(strings.TrimPrefix(s, "sips:"), "sip:")
}

// callOf reports whether a From or To URI names the user (an AOR, or a
// user part alone).
func callOf(uri, user string) bool {
	u, _, _ := strings.Cut(bareURI(uri), ";")
	if strings.Contains(user, "@") {
		return u == user
	}
	name, _, _ := strings.Cut(u, "@")
	return name == user
}

func (a *API) getCall(w http.ResponseWriter, r *http.Request) error {
	if err := a.callsOn(); err != nil {
		return err
	}
	id := r.PathValue("call_id")
	c, ok := a.env.Calls.Get(id)
	if !ok {
		return fail(http.StatusNotFound, "call_id", "no active call %q", id)
	}
	return writeJSON(w, http.StatusOK, c)
}

func (a *API) hangupCall(w http.ResponseWriter, r *http.Request) error {
	if err := a.callsOn(); err != nil {
		return err
	}
	id := r.PathValue("call_id")
	action, err := a.env.Calls.Hangup(id)
	if errors.Is(err, ErrNoCall) {
		return fail(http.StatusNotFound, "call_id", "no active call %q", id)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, HungUp{CallID: id, Action: action})
}

func (a *API) originate(w http.ResponseWriter, r *http.Request) error {
	if err := a.callsOn(); err != nil {
		return err
	}
	var in NewCall
	if err := decode(r, &in); err != nil {
		return err
	}
	in.From, in.To = strings.TrimSpace(in.From), strings.TrimSpace(in.To)
	switch {
	case in.From == "":
		return fail(http.StatusBadRequest, "from", "from is required")
	case in.To == "":
		return fail(http.StatusBadRequest, "to", "to is required")
	}
	o, err := a.env.Calls.Originate(r.Context(), in.From, in.To)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, o)
}
