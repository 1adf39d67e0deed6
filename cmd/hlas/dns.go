package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
)

const dnsUsage = `usage: hlas dns <command> [flags] <argument>

commands:
  resolve <uri>      the targets a request for a sip: or sips: URI goes to
                     (RFC 3263: NAPTR, SRV, A/AAAA), in order, each with the
                     records that led there
  enum <number>      the SIP URIs of an E.164 number (ENUM, RFC 6116), in
                     order; the number as +420224357628 or a tel: URI

The exit status is 0 when something was found, 1 when not (or the DNS
failed), and 2 on bad usage. hlas dns <command> -h lists the flags.
`

// dnsMain runs "hlas dns": the resolver of package resolve on the command
// line, to see where a request would go and why.
func dnsMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dnsUsage)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "resolve", "enum":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, dnsUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "hlas dns: unknown command %q\n%s", cmd, dnsUsage)
		return 2
	}
	fs := flag.NewFlagSet("hlas dns "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	servers := fs.String("server", "", "DNS server host:port to ask instead of those of /etc/resolv.conf; comma-separated for several")
	timeout := fs.Duration("timeout", resolve.DefaultTimeout, "timeout of one query to one server")
	attempts := fs.Int("attempts", resolve.DefaultAttempts, "rounds over the servers before a query fails")
	suffixes := fs.String("enum-suffix", resolve.DefaultENUMSuffix, "enum: comma-separated ENUM trees to try in order")
	fs.Usage = func() {
		arg := "<uri>"
		if cmd == "enum" {
			arg = "<number>"
		}
		fmt.Fprintf(stderr, "usage: hlas dns %s [flags] %s\n\nflags:\n", cmd, arg)
		fs.PrintDefaults()
	}
	pos, err := parseFlagsAnywhere(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "hlas dns %s: want one argument, got %d\n", cmd, len(pos))
		fs.Usage()
		return 2
	}
	if *timeout <= 0 || *attempts <= 0 {
		fmt.Fprintf(stderr, "hlas dns %s: --timeout and --attempts must be positive\n", cmd)
		return 2
	}
	r, err := resolve.New(resolve.Config{
		Servers:      splitList(*servers),
		Timeout:      *timeout,
		Attempts:     *attempts,
		ENUMSuffixes: splitList(*suffixes),
	})
	if err != nil {
		fmt.Fprintf(stderr, "hlas dns %s: %v\n", cmd, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if cmd == "enum" {
		return dnsENUM(ctx, r, pos[0], stdout, stderr)
	}
	return dnsResolve(ctx, r, pos[0], stdout, stderr)
}

// dnsResolve prints the targets of a URI, one a line:
//
//  1. udp 192.0.2.10:5060  (NAPTR 10 50 "s" SIP+D2U → SRV 0 5 5060 sip1.example.com. → A 192.0.2.10)
func dnsResolve(ctx context.Context, r *resolve.Resolver, arg string, stdout, stderr io.Writer) int {
	s := arg
	if l := strings.ToLower(s); !strings.HasPrefix(l, "sip:") && !strings.HasPrefix(l, "sips:") && !strings.HasPrefix(l, "tel:") {
		s = "sip:" + s // "example.com", "alice@example.com:5070"
	}
	u, err := sip.ParseURI(s)
	if err != nil {
		fmt.Fprintf(stderr, "hlas dns resolve: %q: %v\n", arg, err)
		return 2
	}
	if u.Scheme == sip.SchemeTel {
		fmt.Fprintf(stderr, "hlas dns resolve: %s is a telephone number: try hlas dns enum\n", arg)
		return 2
	}
	ts, err := r.Resolve(ctx, u)
	if err != nil {
		fmt.Fprintf(stderr, "hlas dns: %v\n", err)
		return 1
	}
	for i, t := range ts.All() {
		fmt.Fprintf(stdout, "%d. %s  (%s)\n", i+1, t, t.Explain())
	}
	return 0
}

// dnsENUM prints the URIs of a number, one a line.
func dnsENUM(ctx context.Context, r *resolve.Resolver, number string, stdout, stderr io.Writer) int {
	uris, err := r.ENUM(ctx, number)
	if errors.Is(err, resolve.ErrNumber) {
		fmt.Fprintf(stderr, "hlas dns: %v\n", err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "hlas dns: %v\n", err)
		return 1
	}
	for _, u := range uris {
		fmt.Fprintln(stdout, u.String())
	}
	return 0
}

// parseFlagsAnywhere parses flags placed before, between or after the
// positional arguments, and returns the positional ones.
func parseFlagsAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
