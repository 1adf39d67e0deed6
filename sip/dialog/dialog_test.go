package dialog

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/sip"
)

func parseReq(t *testing.T, s string) *sip.Request {
	t.Helper()
	m, err := sip.ParseString(strings.ReplaceAll(s, "\n", "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

func parseRes(t *testing.T, s string) *sip.Response {
	t.Helper()
	m, err := sip.ParseString(strings.ReplaceAll(s, "\n", "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Response)
}

const invite = `INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>
Content-Length: 0

`

func response(code int, toTag, contact string, rr ...string) string {
	tag := ""
	if toTag != "" {
		tag = ";tag=" + toTag
	}
	s := "SIP/2.0 " + strconv.Itoa(code) + " " + sip.StatusText(code) + `
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds
To: Bob <sip:bob@biloxi.example.com>` + tag + `
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
`
	if contact != "" {
		s += "Contact: " + contact + "\n"
	}
	for _, r := range rr {
		s += "Record-Route: " + r + "\n"
	}
	return s + "Content-Length: 0\n\n"
}

func uris(as []sip.Address) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.URI.String())
	}
	return out
}

func TestNewUAC(t *testing.T) {
	inv := parseReq(t, invite)
	res := parseRes(t, response(200, "a6c85cf", "<sip:bob@192.0.2.4>", "<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
	d, err := NewUAC(inv, res)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != (ID{"a84b4c76e66710", "1928301774", "a6c85cf"}) {
		t.Errorf("RFC3261 12.1.2 id %v", d.ID())
	}
	if d.State() != Confirmed || !d.IsUAC() {
		t.Errorf("state %v", d.State())
	}
	// §12.1.2: route set = Record-Route in reverse order.
	if got := strings.Join(uris(d.RouteSet()), ","); got != "sip:p2.example.com;lr,sip:p1.example.com;lr" {
		t.Errorf("route set %s", got)
	}
	if tg := d.RemoteTarget(); tg.String() != "sip:bob@192.0.2.4" {
		t.Errorf("remote target %s", tg.String())
	}
	if s := d.LocalSeq(); s != 314159 {
		t.Errorf("local seq %d", s)
	}
	if _, ok := d.RemoteSeq(); ok {
		t.Error("remote seq not empty")
	}
	bye := d.NewRequest(sip.BYE)
	if bye.CSeq.Seq != 314160 || bye.From.Tag() != "1928301774" || bye.To.Tag() != "a6c85cf" || bye.CallID != "a84b4c76e66710" {
		t.Errorf("BYE %s", bye)
	}
	if bye.URI.String() != "sip:bob@192.0.2.4" || len(bye.Route) != 2 || bye.Route[0].URI.Host != "p2.example.com" {
		t.Errorf("BYE routing %s", bye)
	}
	if _, err := NewUAC(inv, parseRes(t, response(180, "", "<sip:b@x>"))); err == nil {
		t.Error("dialog from a response without To tag")
	}
}

func TestNewUAS(t *testing.T) {
	inv := parseReq(t, invite)
	d, err := NewUAS(inv, "uas-tag")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != (ID{"a84b4c76e66710", "uas-tag", "1928301774"}) || d.State() != Early || d.IsUAC() {
		t.Errorf("id %v state %v", d.ID(), d.State())
	}
	// §12.1.1: route set = Record-Route in order; remote seq = the INVITE's.
	if got := strings.Join(uris(d.RouteSet()), ","); got != "sip:p2.example.com;lr,sip:p1.example.com;lr" {
		t.Errorf("route set %s", got)
	}
	if n, ok := d.RemoteSeq(); !ok || n != 314159 {
		t.Errorf("remote seq %d %v", n, ok)
	}
	d.Confirm()
	bye := d.NewRequest(sip.BYE)
	if bye.From.Tag() != "uas-tag" || bye.To.Tag() != "1928301774" || bye.URI.String() != "sip:alice@pc33.atlanta.example.com" {
		t.Errorf("BYE %s", bye)
	}
	if bye.CSeq.Seq == 0 || bye.CSeq.Seq >= 1<<31 {
		t.Errorf("first local CSeq %d", bye.CSeq.Seq)
	}
	if next := d.NewRequest(sip.INFO); next.CSeq.Seq != bye.CSeq.Seq+1 {
		t.Errorf("CSeq %d after %d", next.CSeq.Seq, bye.CSeq.Seq)
	}
}

// RFC 3261 §12.2.1.1: loose and strict routing.
func TestRouting(t *testing.T) {
	tests := []struct {
		name      string
		routeSet  []string
		wantURI   string
		wantRoute string
	}{
		{"empty route set", nil, "sip:user@remoteua", ""},
		{"loose router first", []string{"<sip:p1;lr>", "<sip:p2;lr>"}, "sip:user@remoteua", "sip:p1;lr,sip:p2;lr"},
		{"RFC3261 12.2.1.1 strict router example", []string{"<sip:proxy1>", "<sip:proxy2>", "<sip:proxy3;lr>", "<sip:proxy4>"},
			"sip:proxy1", "sip:proxy2,sip:proxy3;lr,sip:proxy4,sip:user@remoteua"},
		{"strict router: parameters not allowed in a Request-URI stripped", []string{"<sip:proxy1;method=INVITE;transport=tcp?X=1>"},
			"sip:proxy1;transport=tcp", "sip:user@remoteua"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := parseReq(t, strings.Replace(invite, "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\n", "", 1))
			for _, r := range tc.routeSet {
				a, err := sip.ParseAddress(r)
				if err != nil {
					t.Fatal(err)
				}
				inv.RecordRoute = append(inv.RecordRoute, a)
			}
			inv.Contact[0] = sip.Address{URI: sip.URI{Scheme: "sip", User: "user", Host: "remoteua"}}
			d, _ := NewUAS(inv, "t")
			r := d.NewRequest(sip.BYE)
			if r.URI.String() != tc.wantURI {
				t.Errorf("Request-URI %s, want %s", r.URI.String(), tc.wantURI)
			}
			if got := strings.Join(uris(r.Route), ","); got != tc.wantRoute {
				t.Errorf("Route %s, want %s", got, tc.wantRoute)
			}
		})
	}
}

func TestCSeqAndTargetRefresh(t *testing.T) {
	inv := parseReq(t, invite)
	d, _ := NewUAS(inv, "t")
	d.Confirm()
	req := func(method string, seq string, contact string) *sip.Request {
		s := strings.Replace(invite, "INVITE sip:", method+" sip:", 1)
		s = strings.Replace(s, "To: Bob <sip:bob@biloxi.example.com>", "To: Bob <sip:bob@biloxi.example.com>;tag=t", 1)
		s = strings.Replace(s, "CSeq: 314159 INVITE", "CSeq: "+seq+" "+method, 1)
		s = strings.Replace(s, "Contact: <sip:alice@pc33.atlanta.example.com>", "Contact: "+contact, 1)
		return parseReq(t, s)
	}
	steps := []struct {
		name    string
		req     *sip.Request
		wantErr error
		target  string
	}{
		{"RFC3261 12.2.2 higher CSeq accepted", req("INFO", "314160", "<sip:ignored@x>"), nil, "sip:alice@pc33.atlanta.example.com"},
		{"RFC3261 12.2.2 lower CSeq is 500", req("INFO", "314150", "<sip:a@x>"), ErrOutOfOrder, "sip:alice@pc33.atlanta.example.com"},
		{"ACK not checked", req("ACK", "314159", "<sip:a@y>"), nil, "sip:alice@pc33.atlanta.example.com"},
		{"RFC3311 5.1 UPDATE refreshes the target", req("UPDATE", "314161", "<sip:alice@new.example.com>"), nil, "sip:alice@new.example.com"},
		{"RFC3261 14.2 re-INVITE refreshes the target", req("INVITE", "314170", "<sip:alice@newer.example.com>"), nil, "sip:alice@newer.example.com"},
		{"out-of-order re-INVITE changes nothing", req("INVITE", "314162", "<sip:alice@old.example.com>"), ErrOutOfOrder, "sip:alice@newer.example.com"},
	}
	for _, st := range steps {
		err := d.ReceiveRequest(st.req)
		if !errors.Is(err, st.wantErr) {
			t.Errorf("%s: err %v, want %v", st.name, err, st.wantErr)
		}
		var de *Error
		if st.wantErr != nil && (!errors.As(err, &de) || de.Code != 500) {
			t.Errorf("%s: %v is not a 500", st.name, err)
		}
		if tg := d.RemoteTarget(); tg.String() != st.target {
			t.Errorf("%s: target %s, want %s", st.name, tg.String(), st.target)
		}
	}
	d.Terminate()
	if err := d.ReceiveRequest(req("BYE", "314180", "<sip:a@x>")); !errors.Is(err, ErrTerminated) {
		t.Errorf("request in terminated dialog: %v", err)
	}
}

func TestUACTargetRefreshAndEnd(t *testing.T) {
	inv := parseReq(t, invite)
	d, _ := NewUAC(inv, parseRes(t, response(200, "b", "<sip:bob@1.example>")))
	reinv := d.NewRequest(sip.INVITE)
	r := parseRes(t, response(200, "b", "<sip:bob@2.example>"))
	d.ReceiveResponse(reinv, r)
	if tg := d.RemoteTarget(); tg.Host != "2.example" {
		t.Errorf("RFC3261 12.2.1.2 2xx to re-INVITE: target %s", tg.String())
	}
	info := d.NewRequest(sip.INFO)
	d.ReceiveResponse(info, parseRes(t, response(200, "b", "<sip:bob@3.example>")))
	if tg := d.RemoteTarget(); tg.Host != "2.example" {
		t.Errorf("INFO is no target refresh: target %s", tg.String())
	}
	d.ReceiveResponse(info, parseRes(t, response(481, "b", "")))
	if d.State() != Terminated {
		t.Errorf("RFC3261 12.2.1.2 481 leaves the dialog %v", d.State())
	}
}

// RFC 3261 §13.2.2.4: the ACK for a 2xx.
func TestNewACK(t *testing.T) {
	inv := parseReq(t, invite)
	inv.Add("Proxy-Authorization", `Digest username="alice"`)
	d, _ := NewUAC(inv, parseRes(t, response(200, "b", "<sip:bob@192.0.2.4>", "<sip:p1.example.com;lr>")))
	d.NewRequest(sip.INFO) // uses up 314160
	ack := d.NewACK(inv)
	if ack.Method != sip.ACK || ack.CSeq.Seq != 314159 || ack.CSeq.Method != sip.ACK {
		t.Errorf("ACK CSeq %v", ack.CSeq)
	}
	if ack.URI.String() != "sip:bob@192.0.2.4" || len(ack.Route) != 1 || ack.To.Tag() != "b" {
		t.Errorf("ACK %s", ack)
	}
	if ack.Get("Proxy-Authorization") == "" {
		t.Error("ACK lost the INVITE's credentials")
	}
	if d.LocalSeq() != 314160 {
		t.Errorf("ACK used up a CSeq number: %d", d.LocalSeq())
	}
}

// RFC 3261 §12.1.2, §13.2.2.4: a forked INVITE, one early dialog per To tag.
func TestForkedEarlyDialogs(t *testing.T) {
	inv := parseReq(t, invite)
	tab := NewTable()
	if d, _, _ := tab.Response(inv, parseRes(t, response(100, "", ""))); d != nil {
		t.Fatal("100 made a dialog")
	}
	a, created, err := tab.Response(inv, parseRes(t, response(180, "uas-a", "<sip:bob@a.example>", "<sip:p1;lr>")))
	if err != nil || !created || a.State() != Early {
		t.Fatalf("first 180: %v %v %v", a, created, err)
	}
	b, created, _ := tab.Response(inv, parseRes(t, response(183, "uas-b", "<sip:bob@b.example>")))
	if !created || b == a || tab.Len() != 2 {
		t.Fatalf("second fork: created %v, %d dialogs", created, tab.Len())
	}
	a2, created, _ := tab.Response(inv, parseRes(t, response(180, "uas-a", "<sip:bob@a2.example>", "<sip:p1;lr>")))
	if created || a2 != a {
		t.Fatal("retransmitted 180 made a new dialog")
	}
	if tg := a.RemoteTarget(); tg.Host != "a2.example" {
		t.Errorf("early target refresh: %s", tg.String())
	}
	// 2xx from fork b: confirmed, route set recomputed from the 2xx.
	bb, _, _ := tab.Response(inv, parseRes(t, response(200, "uas-b", "<sip:bob@b.example>", "<sip:p9;lr>", "<sip:p8;lr>")))
	if bb != b || b.State() != Confirmed || a.State() != Early {
		t.Fatalf("after 200: a %v b %v", a.State(), b.State())
	}
	if got := strings.Join(uris(b.RouteSet()), ","); got != "sip:p8;lr,sip:p9;lr" {
		t.Errorf("RFC3261 13.2.2.4 route set from the 2xx: %s", got)
	}
	if d, _, _ := tab.Response(inv, parseRes(t, response(486, "uas-c", ""))); d != nil {
		t.Error("final non-2xx made a dialog")
	}
	// An incoming request from fork a matches its dialog.
	req := parseReq(t, strings.NewReplacer(
		"INVITE sip:bob@biloxi.example.com", "BYE sip:alice@pc33.atlanta.example.com",
		"To: Bob <sip:bob@biloxi.example.com>", "To: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
		"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774", "From: Bob <sip:bob@biloxi.example.com>;tag=uas-a",
		"CSeq: 314159 INVITE", "CSeq: 1 BYE").Replace(invite))
	if tab.MatchRequest(req) != a {
		t.Error("request from fork a does not match its dialog")
	}
	tab.Remove(a.ID())
	if tab.MatchRequest(req) != nil || tab.Len() != 1 {
		t.Error("Remove")
	}
}

// RFC 3262 §4: the UAC PRACKs in-order reliable provisional responses only.
func TestRSeq(t *testing.T) {
	inv := parseReq(t, invite)
	d, _ := NewUAC(inv, parseRes(t, response(180, "x", "<sip:bob@b>")))
	for i, st := range []struct {
		rseq uint32
		want bool
	}{
		{1000, true},  // the first sets the sequence
		{1000, false}, // retransmission
		{1002, false}, // out of order (1001 missing)
		{1001, true},
		{999, false},
		{1002, true},
	} {
		if got := d.AcceptRSeq(st.rseq); got != st.want {
			t.Errorf("step %d: AcceptRSeq(%d) = %v", i, st.rseq, got)
		}
	}
	res := parseRes(t, strings.Replace(response(183, "x", "<sip:bob@b>"), "Content-Length", "Require: 100rel\nRSeq: 4711\nContent-Length", 1))
	if !IsReliable(res) {
		t.Fatal("IsReliable")
	}
	p, err := d.NewPRACK(res)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := ParseRAck(p.Get("RAck"))
	if err != nil || ra != (RAck{4711, 314159, "INVITE"}) {
		t.Errorf("RAck %v %v", ra, err)
	}
	if p.Method != sip.PRACK || p.CSeq.Seq != 314160 || p.To.Tag() != "x" {
		t.Errorf("PRACK %s", p)
	}
	// UAS: random start in [1, 2**31-1], then +1.
	u, _ := NewUAS(inv, "t")
	first := u.NextRSeq()
	if first == 0 || first >= 1<<31 || u.NextRSeq() != first+1 {
		t.Errorf("RFC3262 3 RSeq %d", first)
	}
	for _, bad := range []string{"", "1 2", "0 1 INVITE", "x 1 INVITE"} {
		if _, err := ParseRAck(bad); err == nil {
			t.Errorf("ParseRAck(%q) accepted", bad)
		}
	}
}
