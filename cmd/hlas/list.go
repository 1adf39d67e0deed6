package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/xcap"
	"github.com/hlas-voip/hlas/xcap/resourcelists"
)

const listUsage = `usage: hlas list <command> OWNER [LIST [URI [DISPLAY-NAME]]] [flags]

A user's buddy lists (RFC 4826 resource-lists, the document "index" that
XCAP clients edit too) and the list services that make a list subscribable
(rls-services): a SUBSCRIBE with Supported: eventlist to a service's URI
gets the presence (or busy lamps) of every member in one NOTIFY (RFC 4662).
Works while the server runs: it loads the lists again within a second.

commands:
  add OWNER LIST [URI [NAME]]   create LIST (and its service), add URI to it
  del OWNER LIST [URI]          remove URI from LIST, or LIST and its service
  show OWNER                    the lists, their services and members

flags (every command):
  --service URI    add: the list's service URI (default sip:USER-LIST@DOMAIN
                   of the owner's; printed on creation)
  --events LIST    add: the packages the service serves, comma-separated
                   (default presence,dialog)
  --data DIR       data directory of the embedded database (default ./hlas-data)
  --config FILE    the server's YAML file: its data and store settings
`

// listMain runs `hlas list`.
func listMain(args []string, stdout, stderr io.Writer) int {
	var service, events string
	return storeCommand{
		name: "list", usage: listUsage,
		args: map[string][2]int{"add": {2, 4}, "del": {2, 3}, "show": {1, 1}},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&service, "service", "", "the list's service URI")
			fs.StringVar(&events, "events", "presence,dialog", "packages of the service")
		},
		check: func(cmd string, pos []string) error {
			pos[0] = strings.ToLower(pos[0])
			if u, d, ok := strings.Cut(pos[0], "@"); !ok || u == "" || d == "" || strings.ContainsAny(pos[0], `"<>'`) {
				return fmt.Errorf("%q: want user@domain", pos[0])
			}
			if len(pos) > 1 && !validListName(pos[1]) {
				return fmt.Errorf("%q: a list name is letters, digits, '.', '_' and '-'", pos[1])
			}
			if len(pos) > 2 {
				if _, err := sip.ParseURI(pos[2]); err != nil || strings.ContainsAny(pos[2], `"<>`) {
					return fmt.Errorf("%q: want a SIP URI", pos[2])
				}
			}
			if service != "" {
				if u, err := sip.ParseURI(service); err != nil || u.User == "" || strings.ContainsAny(service, `"<>`) {
					return fmt.Errorf("--service %q: want a SIP URI with a user", service)
				}
			}
			return nil
		},
		run: func(ctx context.Context, st store.Store, cmd string, pos []string, stdout io.Writer) error {
			switch cmd {
			case "add":
				entry, name := "", ""
				if len(pos) > 2 {
					entry = pos[2]
				}
				if len(pos) > 3 {
					name = pos[3]
				}
				var pkgs []string
				for _, p := range strings.Split(events, ",") {
					if p = strings.TrimSpace(p); p != "" {
						pkgs = append(pkgs, p)
					}
				}
				return addToList(ctx, st, pos[0], pos[1], entry, name, service, pkgs, stdout)
			case "del":
				entry := ""
				if len(pos) > 2 {
					entry = pos[2]
				}
				return delFromList(ctx, st, pos[0], pos[1], entry, stdout)
			case "show":
				return showLists(ctx, st, pos[0], stdout)
			}
			return nil
		},
	}.main(args, stdout, stderr)
}

func validListName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// The documents the command edits: "index" of each usage, as clients
// name them.
const listDoc = "index"

// editDoc changes one XCAP document the way the XCAP server does:
// read, edit, write on condition of the tag read, again when another
// writer came first.
func editDoc(ctx context.Context, st store.XCAPDocuments, auid, owner string, empty func() []byte, edit func([]byte) ([]byte, error)) error {
	for range 8 {
		d, err := st.XCAPDocument(ctx, auid, owner, listDoc)
		if errors.Is(err, store.ErrNotFound) {
			d = store.XCAPDocument{AUID: auid, Owner: owner, Name: listDoc, Body: empty()}
		} else if err != nil {
			return err
		}
		body, err := edit(d.Body)
		if err != nil {
			return err
		}
		if body == nil {
			return nil // nothing to change
		}
		d.Body = body
		if _, err = st.PutXCAPDocument(ctx, d, d.ETag); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return errors.New("the document kept changing; try again")
}

func listSelector(list string) string {
	return `resource-lists/list[@name="` + list + `"]`
}

func ownerXUI(owner string) string { return "sip:" + owner }

// listRef is the XCAP URI of a list, as an rls-services document names
// it; the server resolves it by its path.
func listRef(owner, list string) string {
	sel := url.PathEscape(listSelector(list))
	return "http://localhost/xcap-root/resource-lists/users/" + url.PathEscape(ownerXUI(owner)) + "/" + listDoc + "/~~/" + sel
}

// sameList reports whether two XCAP URIs name one list: by user,
// document and selector, whatever host and root a client wrote.
func sameList(a, b string) bool {
	ra, ok := xcap.ParseRef(a)
	rb, ok2 := xcap.ParseRef(b)
	return ok && ok2 && ra == rb
}

func defaultService(owner, list string) string {
	u, d, _ := strings.Cut(owner, "@")
	return "sip:" + u + "-" + list + "@" + d
}

func addToList(ctx context.Context, st store.Store, owner, list, entry, name, service string, pkgs []string, stdout io.Writer) error {
	created := false
	err := editDoc(ctx, st, "resource-lists", owner, resourcelists.NewDocument, func(doc []byte) ([]byte, error) {
		if _, err := xcap.Select(doc, resourcelists.Namespace, listSelector(list), nil); errors.Is(err, xcap.ErrNotFound) {
			created = true
			el := (&resourcelists.List{Name: list}).Append(nil)
			if doc, err = xcap.Apply(doc, resourcelists.Namespace, listSelector(list), nil, xcap.OpPut, el); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		if entry == "" {
			if !created {
				return nil, nil
			}
			return doc, nil
		}
		sel := listSelector(list) + `/entry[@uri="` + entry + `"]`
		el := resourcelists.Entry{URI: entry, DisplayName: name}.Append(nil)
		return xcap.Apply(doc, resourcelists.Namespace, sel, nil, xcap.OpPut, el)
	})
	if err != nil {
		return err
	}
	svc, err := ensureService(ctx, st, owner, list, service, pkgs)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "%s: list %s created, subscribe to %s\n", owner, list, svc)
	}
	if entry != "" {
		fmt.Fprintf(stdout, "%s: %s added to %s\n", owner, entry, list)
	}
	return nil
}

// ensureService gives a list a service in the owner's rls-services
// document, unless one already points at it, and returns its URI.
func ensureService(ctx context.Context, st store.Store, owner, list, service string, pkgs []string) (string, error) {
	ref := listRef(owner, list)
	if service == "" {
		service = defaultService(owner, list)
	}
	if err := serviceFree(ctx, st, owner, service); err != nil {
		return "", err
	}
	err := editDoc(ctx, st, "rls-services", owner, resourcelists.NewServices, func(doc []byte) ([]byte, error) {
		svcs, err := resourcelists.ParseServices(doc)
		if err != nil {
			return nil, err
		}
		for _, sv := range svcs.Services {
			if sameList(sv.ResourceList, ref) {
				service = sv.URI
				return nil, nil
			}
		}
		el := resourcelists.AppendService(nil, service, ref, pkgs)
		return xcap.Apply(doc, resourcelists.ServicesNamespace, `rls-services/service[@uri="`+service+`"]`, nil, xcap.OpPut, el)
	})
	return service, err
}

// serviceFree refuses a service URI that is a subscriber's address or
// another user's service, as the XCAP server does.
func serviceFree(ctx context.Context, st store.Store, owner, service string) error {
	u, err := sip.ParseURI(service)
	if err != nil {
		return err
	}
	user, domain := strings.ToLower(sip.Unescape(u.User)), strings.ToLower(u.Hostname())
	if _, err := st.User(ctx, user, domain); err == nil {
		return fmt.Errorf("%s is a subscriber's address; choose another with --service", service)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	docs, err := st.XCAPDocuments(ctx, "rls-services", "")
	if err != nil {
		return err
	}
	for _, d := range docs {
		if d.Owner == owner {
			continue
		}
		if svcs, err := resourcelists.ParseServices(d.Body); err == nil {
			for _, sv := range svcs.Services {
				if strings.EqualFold(sv.URI, service) {
					return fmt.Errorf("%s is %s's service; choose another with --service", service, d.Owner)
				}
			}
		}
	}
	return nil
}

func delFromList(ctx context.Context, st store.Store, owner, list, entry string, stdout io.Writer) error {
	sel := listSelector(list)
	if entry != "" {
		sel += `/entry[@uri="` + entry + `"]`
	}
	err := editDoc(ctx, st, "resource-lists", owner, resourcelists.NewDocument, func(doc []byte) ([]byte, error) {
		return xcap.Apply(doc, resourcelists.Namespace, sel, nil, xcap.OpDelete, nil)
	})
	if errors.Is(err, xcap.ErrNotFound) {
		if entry != "" {
			return fmt.Errorf("%s has no %s in %s", owner, entry, list)
		}
		return fmt.Errorf("%s has no list %s", owner, list)
	}
	if err != nil {
		return err
	}
	if entry != "" {
		fmt.Fprintf(stdout, "%s: %s removed from %s\n", owner, entry, list)
		return nil
	}
	// The list went: so do the services that named it.
	ref := listRef(owner, list)
	err = editDoc(ctx, st, "rls-services", owner, resourcelists.NewServices, func(doc []byte) ([]byte, error) {
		svcs, err := resourcelists.ParseServices(doc)
		if err != nil {
			return nil, err
		}
		changed := false
		for _, sv := range svcs.Services {
			if sameList(sv.ResourceList, ref) && !strings.Contains(sv.URI, `"`) {
				if doc, err = xcap.Apply(doc, resourcelists.ServicesNamespace, `rls-services/service[@uri="`+sv.URI+`"]`, nil, xcap.OpDelete, nil); err != nil {
					return nil, err
				}
				changed = true
			}
		}
		if !changed {
			return nil, nil
		}
		return doc, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: list %s removed\n", owner, list)
	return nil
}

func showLists(ctx context.Context, st store.Store, owner string, stdout io.Writer) error {
	services := map[xcap.Ref]string{} // the list a service names → its URI
	if d, err := st.XCAPDocument(ctx, "rls-services", owner, listDoc); err == nil {
		if svcs, err := resourcelists.ParseServices(d.Body); err == nil {
			for _, sv := range svcs.Services {
				if k, ok := xcap.ParseRef(sv.ResourceList); ok {
					services[k] = sv.URI
				}
			}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIST\tSERVICE\tMEMBER\tNAME")
	d, err := st.XCAPDocument(ctx, "resource-lists", owner, listDoc)
	if errors.Is(err, store.ErrNotFound) {
		return tw.Flush()
	}
	if err != nil {
		return err
	}
	lists, err := resourcelists.Parse(d.Body)
	if err != nil {
		return fmt.Errorf("%s's lists: %w", owner, err)
	}
	for _, l := range lists.Lists {
		k, _ := xcap.ParseRef(listRef(owner, l.Name))
		svc := services[k]
		if svc == "" {
			svc = "-"
		}
		entries := l.Flatten(1000)
		if len(entries) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t\n", l.Name, svc)
		}
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Name, svc, e.URI, e.DisplayName)
		}
	}
	return tw.Flush()
}
