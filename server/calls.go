package server

import (
	"errors"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/proxy"
)

// callControl is the API's view of calls (api.Calls): the proxy's table
// of tracked calls, and click-to-call.
type callControl struct {
	s *Server
}

func callJSON(c proxy.CallInfo) api.Call {
	out := api.Call{CallID: c.CallID, From: c.From, To: c.To, Source: c.Source, State: c.State,
		Started: c.Started.UTC(), Relayed: c.Relayed}
	if !c.Answered.IsZero() {
		t := c.Answered.UTC()
		out.Answered = &t
	}
	return out
}

// List implements api.Calls.
func (cc callControl) List() []api.Call {
	in := cc.s.proxy.Calls()
	out := make([]api.Call, len(in))
	for i, c := range in {
		out[i] = callJSON(c)
	}
	return out
}

// Get implements api.Calls.
func (cc callControl) Get(callID string) (api.Call, bool) {
	c, ok := cc.s.proxy.Call(callID)
	if !ok {
		return api.Call{}, false
	}
	return callJSON(c), true
}

// Hangup implements api.Calls: the CDR's end reason is "api".
func (cc callControl) Hangup(callID string) (string, error) {
	action, err := cc.s.proxy.Hangup(callID, acc.EndAPI)
	if errors.Is(err, proxy.ErrNoCall) {
		return "", api.ErrNoCall
	}
	return action, err
}
