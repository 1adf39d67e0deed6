package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const initUsage = `usage: hlas init [--tls] [--wss] [--domain D] [--hostname H] [--data DIR] [--force] [DIR]

Writes a commented starter configuration DIR/hlas.yaml (DIR defaults to
the current directory) and, with --tls or --wss, a self-signed certificate
DIR/hlas.crt and its key DIR/hlas.key for the tls and wss listeners.
Existing files are kept unless --force.

flags:
`

// certValidity is how long the self-signed certificate lasts: 825 days,
// the longest some TLS clients accept for a server certificate.
const certValidity = 825 * 24 * time.Hour

// initOptions are what `hlas init` writes.
type initOptions struct {
	dir      string // absolute
	data     string // absolute
	domain   string
	hostname string
	tls, wss bool
	force    bool
}

func (o initOptions) configPath() string { return filepath.Join(o.dir, "hlas.yaml") }
func (o initOptions) certPath() string   { return filepath.Join(o.dir, "hlas.crt") }
func (o initOptions) keyPath() string    { return filepath.Join(o.dir, "hlas.key") }

// initMain runs `hlas init`.
func initMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hlas init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, initUsage)
		fs.PrintDefaults()
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	var o initOptions
	fs.BoolVar(&o.tls, "tls", false, "add a tls listener on port 5061 and write a self-signed certificate and key for it")
	fs.BoolVar(&o.wss, "wss", false, "add a wss listener (SIP over secure WebSocket) on port 8443, with the certificate of --tls")
	fs.StringVar(&o.domain, "domain", host, "the SIP domain the server is responsible for")
	fs.StringVar(&o.hostname, "hostname", host, "the name the certificate is issued for (with 127.0.0.1 and ::1)")
	fs.BoolVar(&o.force, "force", false, "overwrite existing files")
	data := fs.String("data", "", "the server's state directory (default DIR/hlas-data)")
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) > 1 {
		fmt.Fprintf(stderr, "hlas init: one directory expected, got %q\n", pos)
		return 2
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	// Absolute paths in the file: hlas serve (or systemd) may start
	// anywhere.
	if o.dir, err = filepath.Abs(dir); err != nil {
		fmt.Fprintln(stderr, "hlas init:", err)
		return 1
	}
	o.data = filepath.Join(o.dir, "hlas-data")
	if *data != "" {
		if o.data, err = filepath.Abs(*data); err != nil {
			fmt.Fprintln(stderr, "hlas init:", err)
			return 1
		}
	}
	if o.domain == "" || strings.ContainsAny(o.domain, " :;@<>\"#'") {
		fmt.Fprintf(stderr, "hlas init: --domain %q: not a host name\n", o.domain)
		return 2
	}
	if o.hostname == "" || strings.ContainsAny(o.hostname, " ;@<>/\"") {
		fmt.Fprintf(stderr, "hlas init: --hostname %q: not a host name\n", o.hostname)
		return 2
	}
	if err := writeInit(o, stdout); err != nil {
		fmt.Fprintln(stderr, "hlas init:", err)
		return 1
	}
	return 0
}

// writeInit writes the files, all or (when one exists without --force)
// none.
func writeInit(o initOptions, stdout io.Writer) error {
	withCert := o.tls || o.wss
	paths := []string{o.configPath()}
	if withCert {
		paths = append(paths, o.certPath(), o.keyPath())
	}
	if !o.force {
		var exist []string
		for _, p := range paths {
			if _, err := os.Lstat(p); err == nil {
				exist = append(exist, p)
			}
		}
		if len(exist) > 0 {
			return fmt.Errorf("%s already exist%s; --force overwrites", strings.Join(exist, ", "), map[bool]string{true: "s"}[len(exist) == 1])
		}
	}
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return err
	}
	var notAfter time.Time
	if withCert {
		cert, key, na, err := selfSigned(o.hostname, time.Now())
		if err != nil {
			return err
		}
		notAfter = na
		if err := writeNew(o.keyPath(), key, 0o600, o.force); err != nil {
			return err
		}
		if err := writeNew(o.certPath(), cert, 0o644, o.force); err != nil {
			return err
		}
	}
	if err := writeNew(o.configPath(), starterConfig(o), 0o640, o.force); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", o.configPath())
	if withCert {
		fmt.Fprintf(stdout, "wrote %s (self-signed for %s, 127.0.0.1 and ::1; valid until %s)\n", o.certPath(), o.hostname, notAfter.UTC().Format("2006-01-02"))
		fmt.Fprintf(stdout, "wrote %s (private key, mode 0600)\n", o.keyPath())
	}
	fmt.Fprintf(stdout, "\nstart the server with:\n  hlas serve --config %s\n", o.configPath())
	return nil
}

// writeNew writes a file, refusing to replace one unless force (the
// check before may race with another writer; O_EXCL does not).
func writeNew(path string, data []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return err
	}
	// O_TRUNC keeps an existing file's mode: a key must not stay readable.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// selfSigned makes an ECDSA P-256 certificate for host, 127.0.0.1 and
// ::1, returning the certificate and PKCS #8 key in PEM.
func selfSigned(host string, now time.Time) (certPEM, keyPEM []byte, notAfter time.Time, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, notAfter, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, notAfter, err
	}
	notAfter = now.Add(certValidity)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"hlas self-signed"}},
		NotBefore:    now.Add(-time.Hour), // clocks differ
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// ClientAuth too: the server presents it when it connects to a
		// peer over TLS.
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		if !ip.IsLoopback() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	} else {
		tmpl.DNSNames = []string{host}
		if host != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, notAfter, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, notAfter, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	return certPEM, keyPEM, notAfter, nil
}

// starterConfig is the commented hlas.yaml. Lines "# ..." (one space)
// explain; lines "#key: ..." or, nested, "#  key: ..." are settings left
// out, each valid when its # is removed (the tests remove them all and
// load the result).
func starterConfig(o initOptions) []byte {
	var b bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# hlas configuration, written by hlas init.")
	p("#")
	p("# Every key is a field of server.Config, documented there")
	p("# (go doc github.com/hlas-voip/hlas/server.Config) and in docs/.")
	p("# Unknown keys are errors. Check the file with `hlas config check FILE`;")
	p("# SIGHUP reloads what can change while running (docs/reload.md).")
	p("# Lines \"#key: value\" show settings left at their default or off:")
	p("# remove the # to use them.")
	p("")
	p("# Listeners, proto:host:port with proto udp, tcp, tls, ws or wss")
	p("# (IPv6 hosts in brackets: udp:[::]:5060).")
	p("listen:")
	p("  - udp:0.0.0.0:5060")
	p("  - tcp:0.0.0.0:5060")
	if o.tls {
		p("  - tls:0.0.0.0:5061")
	} else {
		p("#  - tls:0.0.0.0:5061")
	}
	p("#  - ws:0.0.0.0:8080")
	if o.wss {
		p("  - wss:0.0.0.0:8443")
	} else {
		p("#  - wss:0.0.0.0:8443")
	}
	p("")
	p("# The SIP domains this server is responsible for: requests for them,")
	p("# and for the server's own addresses, are handled here.")
	p("domain:")
	p("  - %s", yamlString(o.domain))
	p("")
	p("# Where the server keeps its state: the embedded SQLite database")
	p("# hlas.db with subscribers, registrations and call records.")
	p("data: %s", yamlString(o.data))
	p("#store: postgres://hlas@localhost/hlas")
	p("")
	p("# PEM certificate and key for the tls and wss listeners.")
	if o.tls || o.wss {
		p("# These were made by hlas init and are self-signed: replace them with")
		p("# ones from a CA (Let's Encrypt) for phones that check certificates.")
		p("tls_cert: %s", yamlString(o.certPath()))
		p("tls_key: %s", yamlString(o.keyPath()))
	} else {
		p("# hlas init --tls writes a self-signed pair.")
		p("#tls_cert: %s", yamlString(o.certPath()))
		p("#tls_key: %s", yamlString(o.keyPath()))
	}
	p("")
	p("# debug, info, warn or error.")
	p("log_level: info")
	p("# Prometheus metrics at http://HOST:PORT/metrics.")
	p("#metrics_listen: 127.0.0.1:9090")
	p("")
	p("# SIP over WebSocket (RFC 7118) for browser phones, on ws and wss")
	p("# listeners (docs/websocket.md). Empty allowed_origins allows every")
	p("# origin.")
	p("#websocket:")
	p("#  allowed_origins: [\"*.%s\"]", o.domain)
	p("#  ping_interval: 30s")
	p("#  ping_timeout: 10s")
	p("")
	p("# Media relay for calls behind NAT (docs/media.md): relay auto, always")
	p("# or never; engine builtin or rtpengine:udp:HOST:PORT.")
	p("#media:")
	p("#  relay: auto")
	p("#  engine: builtin")
	p("#  port_min: 30000")
	p("#  port_max: 39999")
	p("#  timeout: 60s")
	p("")
	p("# REST API under /api/v1 (docs/api.md), off unless listen is set.")
	p("# Tokens: hlas api token add NAME.")
	p("#api:")
	p("#  listen: 127.0.0.1:8088")
	p("#  tls: false")
	p("")
	p("# Copy every SIP message to a HEP v3 collector: Homer, sngrep -L")
	p("# (docs/capture.md).")
	p("#capture:")
	p("#  hep: udp:127.0.0.1:9060")
	p("#  node_id: 1")
	return b.Bytes()
}

// yamlString quotes s when YAML would not read it back as the same plain
// string.
func yamlString(s string) string {
	if s == "" || strings.ContainsAny(s, ":#{}[],&*!|>'\"%@`\\") || strings.TrimSpace(s) != s {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	return s
}
