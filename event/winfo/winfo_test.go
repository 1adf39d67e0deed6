package winfo

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The example of RFC 3858 §5 and a partial document that follows it.
func TestParseExamples(t *testing.T) {
	cases := []struct {
		file string
		want Info
	}{
		{"rfc3858.xml", Info{Version: 0, Full: true, Lists: []WatcherList{{
			Resource: "sip:professor@example.net", Package: "presence", Watchers: []Watcher{
				{ID: "8ajksjda7s", URI: "sip:userA@example.net", Status: "active", Event: "approved", DurationSubscribed: 509},
				{ID: "hh8juja87s997-ass7", URI: "sip:userB@example.org", DisplayName: "Mr. Subscriber", Status: "pending", Event: "subscribe"},
			}}}}},
		{"partial.xml", Info{Version: 1, Full: false, Lists: []WatcherList{{
			Resource: "sip:professor@example.net", Package: "presence", Watchers: []Watcher{
				{ID: "hh8juja87s997-ass7", URI: "sip:userB@example.org", DisplayName: "Mr. Subscriber", Status: "terminated", Event: "rejected"},
			}}}}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			got, err := Parse(readFile(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("got\n%+v\nwant\n%+v", *got, c.want)
			}
			again, err := Parse(Build(got.Version, got.Full, got.Lists))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Build round trip: %v\n%+v", err, again)
			}
		})
	}
}

func TestBuildExact(t *testing.T) {
	got := string(Build(2, true, []WatcherList{{Resource: "sip:alice@example.com", Package: "presence", Watchers: []Watcher{
		{ID: "w1", URI: "sip:bob@example.com", DisplayName: "Bob", Status: "pending", Event: "subscribe", DurationSubscribed: 3, Expiration: 3597},
	}}, {Resource: "sip:alice@example.com", Package: "dialog"}}))
	want := `<?xml version="1.0" encoding="UTF-8"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="2" state="full">
<watcher-list resource="sip:alice@example.com" package="presence">
<watcher id="w1" status="pending" event="subscribe" display-name="Bob" duration-subscribed="3" expiration="3597">sip:bob@example.com</watcher>
</watcher-list>
<watcher-list resource="sip:alice@example.com" package="dialog">
</watcher-list>
</watcherinfo>
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A watcher's display name comes from its From header: anything it holds
// must stay inside the attribute.
func TestBuildEscapes(t *testing.T) {
	evil := `"Mallory" <&> ' ]]>` + "\x1b\r\n\t"
	out := Build(0, true, []WatcherList{{Resource: `sip:a@b;x="&"`, Package: "presence", Watchers: []Watcher{
		{ID: `<id>`, URI: "sip:m@evil;p=<&>", DisplayName: evil, Status: "pending", Event: "subscribe"}}}})
	info, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, out)
	}
	w := info.Lists[0].Watchers[0]
	if w.DisplayName != strings.Replace(evil, "\x1b", "\uFFFD", 1) || w.ID != "<id>" || w.URI != "sip:m@evil;p=<&>" || info.Lists[0].Resource != `sip:a@b;x="&"` {
		t.Errorf("values changed: %+v\n%s", info, out)
	}
	if len(info.Lists[0].Watchers) != 1 {
		t.Errorf("display name created watchers:\n%s", out)
	}
}

func TestParseErrors(t *testing.T) {
	const head = `<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="full">`
	list := func(s string) string {
		return head + `<watcher-list resource="sip:a@b" package="presence">` + s + `</watcher-list></watcherinfo>`
	}
	cases := []struct{ name, in, want string }{
		{"empty", ``, "no root"},
		{"wrong namespace", `<watcherinfo xmlns="urn:ietf:params:xml:ns:pidf" version="1" state="full"/>`, "want <watcherinfo> in urn:ietf:params:xml:ns:watcherinfo"},
		{"no version", `<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" state="full"/>`, "no version"},
		{"bad version", `<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1.0" state="full"/>`, "not a 32-bit"},
		{"bad state", `<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="FULL"/>`, `state "FULL"`},
		{"list without package", head + `<watcher-list resource="sip:a@b"/></watcherinfo>`, "resource and package"},
		{"watcher without id", list(`<watcher status="active" event="approved">sip:x</watcher>`), "without id"},
		{"bad status", list(`<watcher id="1" status="allowed" event="approved">sip:x</watcher>`), `status "allowed"`},
		{"bad event", list(`<watcher id="1" status="active" event="ok">sip:x</watcher>`), `event "ok"`},
		{"no uri", list(`<watcher id="1" status="active" event="approved"> </watcher>`), "no URI"},
		{"bad duration", list(`<watcher id="1" status="active" event="approved" duration-subscribed="x">sip:x</watcher>`), "duration-subscribed"},
		{"DTD", `<!DOCTYPE w>` + list(``), "DTD"},
		{"too deep", list(strings.Repeat("<x>", 33) + strings.Repeat("</x>", 33)), "deeper"},
		{"two roots", list(``) + list(``), "more than one root"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %+v", info)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "winfo: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte(head + strings.Repeat(" ", MaxSize) + "</watcherinfo>")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}
