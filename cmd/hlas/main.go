// Command hlas is the hlas SIP server and its tools.
//
//	hlas serve [flags]   run the server
//	hlas version         print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/hlas-voip/hlas/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: hlas <command> [flags]

commands:
  init      write a starter configuration (and with --tls a certificate): hlas init [DIR]
  serve     run the SIP server (hlas serve -h for flags)
  ua        a SIP user agent: register, call, answer, message, options (hlas ua -h)
  dns       RFC 3263 server location and ENUM look-ups (hlas dns -h)
  user      subscribers: add, del, passwd, list, import (hlas user -h)
  reg       registrations: list (hlas reg -h)
  cdr       call detail records: list, export, purge (hlas cdr -h)
  ban       banned sources: list, add, del (hlas ban -h)
  mwi       message waiting: set, show (hlas mwi -h)
  presence  who may watch whom: allow, block, confirm, del, list (hlas presence -h)
  list      buddy lists and list services: add, del, show (hlas list -h)
  config    check a configuration file: hlas config check FILE
  api       REST API tokens: token add, list, del (hlas api -h)
  version   print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "init":
		return initMain(args[1:], stdout, stderr)
	case "serve":
		return serve(args[1:], stderr)
	case "ua":
		return uaMain(args[1:], stdout, stderr)
	case "dns":
		return dnsMain(args[1:], stdout, stderr)
	case "user":
		return userMain(args[1:], os.Stdin, stdout, stderr)
	case "reg":
		return regMain(args[1:], stdout, stderr)
	case "cdr":
		return cdrMain(args[1:], stdout, stderr)
	case "ban":
		return banMain(args[1:], stdout, stderr)
	case "mwi":
		return mwiMain(args[1:], stdout, stderr)
	case "presence":
		return presenceMain(args[1:], stdout, stderr)
	case "list":
		return listMain(args[1:], stdout, stderr)
	case "config":
		return configMain(args[1:], stdout, stderr)
	case "api":
		return apiMain(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "hlas %s (%s, %s/%s)\n", server.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "hlas: unknown command %q\n%s", args[0], usage)
	return 2
}

// serve parses the flags over the config file and runs the server until
// SIGINT or SIGTERM; SIGHUP reloads the file (with the same flags over
// it).
func serve(args []string, stderr io.Writer) int {
	cfg, err := serveConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "hlas:", err)
		return 2
	}
	level := new(slog.LevelVar) // a reload may change it
	level.Set(server.LogLevel(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = "./hlas-data"
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		log.Error("data directory", "dir", dataDir, "err", err)
		return 1
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		log.Error("config", "err", err)
		return 1
	}
	srv.SetLogLevelVar(level)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer reloadOnHangup(ctx, srv, args, log)()
	log.Info("starting", "version", server.Version, "data", dataDir)
	if err := srv.Run(ctx); err != nil {
		log.Error("server", "err", err)
		return 1
	}
	return 0
}

// serveConfig builds the configuration: the --config file first, then the
// flags given on the command line (flags left at their defaults do not
// override the file).
func serveConfig(args []string, stderr io.Writer) (server.Config, error) {
	var cfg server.Config
	fs := flag.NewFlagSet("hlas serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML configuration file; flags override it")
	listen := fs.String("listen", strings.Join(server.DefaultListen, ","), "comma-separated proto:host:port listeners, proto udp|tcp|tls|ws|wss")
	domain := fs.String("domain", "", "comma-separated SIP domains this server is responsible for")
	data := fs.String("data", "./hlas-data", "directory for the server's state")
	tlsCert := fs.String("tls-cert", "", "PEM certificate for tls and wss listeners")
	tlsKey := fs.String("tls-key", "", "PEM private key for tls listeners")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	metrics := fs.String("metrics-listen", "", "host:port for the Prometheus /metrics endpoint (off when empty)")
	maxSize := fs.Int("max-message-size", 65536, "largest accepted message in bytes; larger requests get 513")
	forceRPort := fs.Bool("force-rport", false, "send UDP responses to the source port even without rport (NAT)")
	maxQueueDelay := fs.Duration("max-queue-delay", server.DefaultMaxQueueDelay, "a new request that waited longer for a worker gets 503 with Retry-After")
	dnsServers := fs.String("dns", "", "comma-separated DNS servers host[:port] for RFC 3263 and ENUM (default: the config's dns.servers, else /etc/resolv.conf)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if *configFile != "" {
		if err := cfg.LoadFile(*configFile); err != nil {
			return cfg, err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = splitList(*listen)
		case "domain":
			cfg.Domains = splitList(*domain)
		case "data":
			cfg.DataDir = *data
		case "tls-cert":
			cfg.TLSCert = *tlsCert
		case "tls-key":
			cfg.TLSKey = *tlsKey
		case "log-level":
			cfg.LogLevel = *logLevel
		case "metrics-listen":
			cfg.MetricsListen = *metrics
		case "max-message-size":
			cfg.MaxMessageSize = *maxSize
		case "force-rport":
			cfg.ForceRPort = *forceRPort
		case "dns":
			cfg.DNS.Servers = splitList(*dnsServers)
		case "max-queue-delay":
			cfg.MaxQueueDelay = *maxQueueDelay
		}
	})
	return cfg, cfg.Validate()
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
