package server

import (
	"context"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/event/publish"
)

// BenchmarkPresenceChange is what a presentity's change costs the
// presence package before its NOTIFYs go out: the PUBLISH modifying its
// document (a phone's PIDF, open and closed in turn) checked by the
// compositor, then the document its watchers get composed (once per
// change: the composition is cached until the next one). ns/op and
// allocs/op are per change.
func BenchmarkPresenceChange(b *testing.B) {
	ev := &events{docs: presenceDocs{m: map[string]*presenceDoc{}}}
	var err error
	ev.pub, err = publish.New(publish.Config{}, publish.Env{}, map[string]publish.Codec{"presence": pidfCodec{}})
	if err != nil {
		b.Fatal(err)
	}
	const resource = "alice@example.com"
	var bodies [2][]byte
	for i, basic := range []string{"open", "closed"} {
		bodies[i] = []byte(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">
  <dm:person id="p4159"><rpid:activities><rpid:busy/></rpid:activities></dm:person>
  <tuple id="t4109"><status><basic>` + basic + `</basic></status><contact>sip:alice@192.0.2.10:5060</contact></tuple>
</presence>`)
	}
	ctx := context.Background()
	r := publish.Request{Event: "presence", Resource: resource, Expires: 3600, ContentType: "application/pidf+xml", Body: bodies[0]}
	res := ev.pub.Publish(ctx, r)
	if res.Code != 200 {
		b.Fatalf("initial PUBLISH: %+v", res)
	}
	etag := res.ETag
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.IfMatch, r.Body = etag, bodies[(i+1)%2]
		res := ev.pub.Publish(ctx, r)
		if res.Code != 200 || !res.Changed {
			b.Fatalf("modify: %+v", res)
		}
		etag = res.ETag
		ev.docs.forget(resource)
		if doc := ev.presenceDoc(resource); !strings.Contains(string(doc), "<basic>"+[]string{"open", "closed"}[(i+1)%2]+"</basic>") {
			b.Fatalf("composed %s", doc)
		}
	}
}
