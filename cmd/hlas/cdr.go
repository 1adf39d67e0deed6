package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/store"
)

const cdrUsage = `usage: hlas cdr <command> [flags]

Call detail records from the store (the server's accounting). Works
while the server runs: every record listed is committed.

commands:
  list                       one line per record, oldest first
  export --format csv|json   every field; json is JSON Lines (one object a line)
  purge --before T | --older-than D [--dry-run]
                             delete the records that ended before T, or more
                             than D ("2160h") ago (a record without an end
                             counts from its start) and print how many;
                             --dry-run prints how many it would delete

flags of list and export (anywhere on the line):
  --since T        records of calls started at or after T
  --until T        records of calls started before T
                   (T: RFC 3339 "2025-01-02T15:04:05Z", a date "2025-01-02",
                   or a duration back from now "1h", "30m")
  --user U         authenticated user, caller or callee: user@domain, or a user part
  --status S       answered, failed, cancelled, or a status code (486)
  --kind K         call, message or register
  --limit N        at most N records

flags of every command:
  --data DIR       data directory of the embedded database (default ./hlas-data)
  --config FILE    the server's YAML file: its data and store settings

list's MEDIA column, for a call whose media the server relayed: the RTP
and RTCP packets the caller/callee sent through the relay, then those the
other party reported lost; "-" when not relayed (export has every count).
`

// cdrMain runs `hlas cdr`.
func cdrMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "purge" {
		return cdrPurge(args[1:], stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "list" && args[0] != "export") {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, cdrUsage)
			return 0
		}
		fmt.Fprint(stderr, cdrUsage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("hlas cdr "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cdrUsage) }
	sf := addStoreFlags(fs)
	since := fs.String("since", "", "records started at or after this time")
	until := fs.String("until", "", "records started before this time")
	user := fs.String("user", "", "authenticated user, caller or callee")
	status := fs.String("status", "", "answered, failed, cancelled or a status code")
	kind := fs.String("kind", "", "call, message or register")
	limit := fs.Int("limit", 0, "at most this many records")
	format := fs.String("format", "csv", "export format: csv or json")
	pos, err := parseFlagsAnywhere(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "hlas cdr %s: unexpected argument %q\n", cmd, pos[0])
		return 2
	}
	// The filters are the REST API's /cdrs query too: one parser.
	f, err := acc.ParseCDRQuery(acc.CDRQuery{Since: *since, Until: *until, User: *user, Status: *status, Kind: *kind}, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "hlas cdr: --%v\n", err)
		return 2
	}
	f.Limit = *limit
	if *format != "csv" && *format != "json" {
		fmt.Fprintf(stderr, "hlas cdr: --format %q: want csv or json\n", *format)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sf.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "hlas cdr:", err)
		return 1
	}
	defer st.Close()
	recs, err := st.CDRs(ctx, f)
	if err != nil {
		fmt.Fprintln(stderr, "hlas cdr:", err)
		return 1
	}
	switch {
	case cmd == "list":
		err = listCDRs(stdout, recs)
	case *format == "json":
		err = acc.WriteJSON(stdout, recs)
	default:
		err = acc.WriteCSV(stdout, recs)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hlas cdr:", err)
		return 1
	}
	return 0
}

// cdrPurge runs `hlas cdr purge`: what the server's accounting.retention
// does, by hand, for an operator who keeps records forever or wants them
// gone sooner. It has flags of its own: a filter of list (--user) must
// be refused here, not ignored while every record goes.
func cdrPurge(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hlas cdr purge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cdrUsage) }
	sf := addStoreFlags(fs)
	beforeArg := fs.String("before", "", "delete the records that ended before this time")
	olderThan := fs.String("older-than", "", "delete the records that ended longer ago than this duration")
	dryRun := fs.Bool("dry-run", false, "print how many records would be deleted, delete none")
	pos, err := parseFlagsAnywhere(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "hlas cdr purge: unexpected argument %q\n", pos[0])
		return 2
	}
	now := time.Now()
	var before time.Time
	switch {
	case (*beforeArg == "") == (*olderThan == ""):
		fmt.Fprintln(stderr, "hlas cdr purge: give one of --before and --older-than")
		return 2
	case *beforeArg != "":
		if before, err = acc.ParseWhen(*beforeArg, now); err != nil {
			fmt.Fprintln(stderr, "hlas cdr purge: --before:", err)
			return 2
		}
	default:
		d, err := time.ParseDuration(*olderThan)
		if err != nil || d <= 0 {
			fmt.Fprintf(stderr, "hlas cdr purge: --older-than %q: want a positive duration like 2160h\n", *olderThan)
			return 2
		}
		before = now.Add(-d)
	}
	// No deadline: a first purge of a large table may take minutes (it
	// pauses between chunks for the server's writes). An interrupt stops
	// it; the chunks already deleted stay deleted.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := sf.open(openCtx)
	if err != nil {
		fmt.Fprintln(stderr, "hlas cdr purge:", err)
		return 1
	}
	defer st.Close()
	when := before.Format(time.RFC3339)
	if *dryRun {
		n, err := st.PurgeableCDRs(ctx, before)
		if err != nil {
			fmt.Fprintln(stderr, "hlas cdr purge:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%d %s would be deleted (ended before %s)\n", n, records(n), when)
		return 0
	}
	n, err := st.PurgeCDRs(ctx, before)
	if err != nil {
		fmt.Fprintf(stderr, "hlas cdr purge: %v (%d %s deleted before it)\n", err, n, records(n))
		return 1
	}
	fmt.Fprintf(stdout, "%d %s deleted (ended before %s)\n", n, records(n), when)
	return 0
}

func records(n int64) string {
	if n == 1 {
		return "record"
	}
	return "records"
}

// listCDRs prints one aligned line per record.
func listCDRs(w io.Writer, recs []store.CDR) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tKIND\tSTATUS\tCODE\tDURATION\tFROM\tTO\tUSER\tENDED-BY\tEND\tMEDIA\tCALL-ID")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.3fs\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Start.Local().Format("2006-01-02 15:04:05"),
			r.Kind, r.Status, r.Code, r.Duration.Seconds(), r.Caller, r.Callee, dash(r.User), dash(r.EndedBy),
			dash(r.EndReason), mediaSummary(&r), r.CallID)
	}
	return tw.Flush()
}

// mediaSummary is the MEDIA column: what the relay forwarded of a relayed
// call, caller/callee (the packets each sent, those the other reported
// lost), "-" for a call whose media was not relayed. export has the rest.
func mediaSummary(r *store.CDR) string {
	if !r.MediaRelayed {
		return "-"
	}
	return fmt.Sprintf("%d/%d pkts %d/%d lost", r.CallerPackets, r.CalleePackets, r.CallerLost, r.CalleeLost)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
