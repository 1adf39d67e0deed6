//go:build interop

package interop

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Network namespaces for the tests that need real routing and real NATs
// (the media relay): each test builds its own little internet of
// namespaces joined by veth pairs, with addresses that exist only inside
// them, and removes it when it ends. Only root can do this; without root
// the tests skip, saying so.
//
// A namespace is named netnsPrefix + the test process's PID + a counter +
// its role, so that tests of one run (-parallel) and of concurrent runs
// never collide, and a run can tell the leftovers of a crashed earlier
// run (whose PID is gone) from the live namespaces of another.

// netnsPrefix starts the name of every namespace the tests create.
const netnsPrefix = "hlasnat-"

// netnsTools are the commands the namespace tests run, with the Debian
// package providing each. Missing ones fail the test: a machine that can
// create namespaces (root) is expected to run these tests.
var netnsTools = []struct{ name, debianPackage string }{
	{"ip", "iproute2"},
	{"iptables", "iptables"},
}

// netnsSeq numbers the namespace sets of this process.
var netnsSeq atomic.Int64

// removeStaleOnce removes, once per process, what crashed earlier runs
// left behind.
var removeStaleOnce sync.Once

// requireNetNS skips the test unless it runs as root, fails it when a
// tool is missing, and removes the leftovers of crashed earlier runs.
func requireNetNS(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: this test builds network namespaces with NATs (ip netns, iptables); " +
			"run the interop tests as root (CI does)")
	}
	for _, tool := range netnsTools {
		if _, err := exec.LookPath(tool.name); err != nil {
			t.Fatalf("%s is required but not installed (%v); install the Debian package %q", tool.name, err, tool.debianPackage)
		}
	}
	removeStaleOnce.Do(func() { removeStaleNetNS(t) })
}

// removeStaleNetNS deletes the namespaces named by netnsPrefix whose
// creating process no longer exists, killing what still runs in them
// (the peers a crashed run started there).
func removeStaleNetNS(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Logf("ip netns list: %v\n%s", err, out)
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], netnsPrefix) {
			continue
		}
		name := fields[0]
		pidText, _, _ := strings.Cut(strings.TrimPrefix(name, netnsPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if pids, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if n, err := strconv.Atoi(p); err == nil {
					syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("remove stale namespace %s: %v\n%s", name, err, out)
		} else {
			t.Logf("removed namespace %s left by an earlier run (pid %d)", name, pid)
		}
	}
}

// processAlive reports whether a process with this PID exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// netns is one network namespace, known by its name under /run/netns.
type netns struct{ name string }

// command returns a command that runs args inside the namespace.
func (n netns) command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...)
}

// run runs args inside the namespace and fails the test if it fails.
func (n netns) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.command(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("in namespace %s: %s: %v\n%s", n.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ip runs `ip -n NAME args` and fails the test if it fails.
func (n netns) ip(t *testing.T, args ...string) {
	t.Helper()
	all := append([]string{"-n", n.name}, args...)
	if out, err := exec.Command("ip", all...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(all, " "), err, out)
	}
}

// do runs f on an OS thread that has entered the namespace: sockets f
// creates belong to the namespace for their whole life. The thread goes
// back to its own namespace afterwards, or, if it cannot, stays locked
// so that it ends with its goroutine instead of serving others.
func (n netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer own.Close()
		target, err := os.Open("/run/netns/" + n.name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back from %s: %w", n.name, err))
			return // the thread stays locked and exits with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netLab is one test's set of namespaces: a public segment (a bridge in
// a namespace of its own) that hosts join with a veth pair each, and
// whatever else the test wires up. Everything is removed when the test
// ends, after the processes the test started there (their cleanups run
// first: they are registered later).
type netLab struct {
	t  *testing.T
	id string // netnsPrefix + pid + "-" + sequence number
	// pub holds the bridge br0 of the public segment.
	pub   netns
	ports int // veth ports on br0 so far
}

// newNetLab creates the public segment of a fresh lab.
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	requireNetNS(t)
	l := &netLab{t: t, id: fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), netnsSeq.Add(1))}
	l.pub = l.newNS("pub")
	l.pub.ip(t, "link", "add", "br0", "type", "bridge")
	l.pub.ip(t, "link", "set", "br0", "up")
	return l
}

// newNS creates an empty namespace with loopback up, IPv6 duplicate
// address detection off (addresses usable at once) and, for routers,
// forwarding on; it is deleted when the test ends.
func (l *netLab) newNS(role string) netns {
	t := l.t
	t.Helper()
	n := netns{name: l.id + "-" + role}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s (creating network namespaces needs root with CAP_SYS_ADMIN)", n.name, err, out)
	}
	t.Cleanup(func() {
		// Nothing the test started may outlive it in here.
		if pids, err := exec.Command("ip", "netns", "pids", n.name).Output(); err == nil && len(strings.TrimSpace(string(pids))) > 0 {
			t.Errorf("processes still running in namespace %s at its removal: %s", n.name, strings.TrimSpace(string(pids)))
			for _, p := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", n.name, err, out)
		}
	})
	n.ip(t, "link", "set", "lo", "up")
	n.run(t, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	return n
}

// plug connects n to the public segment by a veth pair whose end in n is
// called ifname, with the addresses given (CIDR notation, IPv4 or IPv6).
func (l *netLab) plug(n netns, ifname string, addrs ...string) {
	t := l.t
	t.Helper()
	l.ports++
	port := fmt.Sprintf("p%d", l.ports)
	l.pub.ip(t, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", n.name)
	l.pub.ip(t, "link", "set", port, "master", "br0", "up")
	l.connectIf(n, ifname, addrs...)
}

// wire connects a and b by a veth pair (aif in a, bif in b), with the
// addresses given for each end.
func (l *netLab) wire(a netns, aif string, aAddrs []string, b netns, bif string, bAddrs []string) {
	t := l.t
	t.Helper()
	a.ip(t, "link", "add", aif, "type", "veth", "peer", "name", bif, "netns", b.name)
	l.connectIf(a, aif, aAddrs...)
	l.connectIf(b, bif, bAddrs...)
}

// connectIf brings ifname in n up with the addresses given.
func (l *netLab) connectIf(n netns, ifname string, addrs ...string) {
	t := l.t
	t.Helper()
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", ifname}
		if strings.Contains(a, ":") {
			args = append([]string{"-6"}, append(args, "nodad")...)
		}
		n.ip(t, args...)
	}
	n.ip(t, "link", "set", ifname, "up")
	// Without offload every UDP checksum is computed when a packet is
	// sent and verified when it is received, as on a physical network:
	// veths otherwise pass packets whose checksum is never completed,
	// which would hide a wrong one (the media relay's kernel path
	// rewrites addresses and ports under it).
	n.run(t, "ethtool", "-K", ifname, "tx", "off", "rx", "off")
}

// natLAN builds a private IPv4 LAN behind a NAT router on the public
// segment: the router (namespace role+"-nat") has wan on the public side
// and masquerades everything leaving there, with randomized source
// ports when symmetric is set (--random-fully: a new port for every
// destination, as a symmetric NAT does); the host (role) has lanAddr and
// the router, lanGW, as its default route. It returns both namespaces.
func (l *netLab) natLAN(role, wan, lanGW, lanAddr string, symmetric bool) (router, host netns) {
	t := l.t
	t.Helper()
	router, host = l.routedLAN(role+"-nat", role, wan, lanGW, lanAddr)
	masq := []string{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"}
	if symmetric {
		masq = append(masq, "--random-fully")
	}
	router.run(t, masq...)
	return router, host
}

// v6LAN builds an IPv6 LAN routed (no NAT, as IPv6 is deployed) to the
// public segment: the router (role+"-gw") has wan there and lanGW, the
// host (role) lanAddr with the router as its default route. The caller
// adds the route to the LAN where it needs one.
func (l *netLab) v6LAN(role, wan, lanGW, lanAddr string) (router, host netns) {
	l.t.Helper()
	return l.routedLAN(role+"-gw", role, wan, lanGW, lanAddr)
}

// routedLAN builds a LAN of one host behind a router on the public
// segment: the router (namespace routerRole) has wan on the public side
// and lanGW on the LAN, the host (hostRole) lanAddr and the router as its
// default route. Addresses are CIDR, IPv4 or IPv6.
func (l *netLab) routedLAN(routerRole, hostRole, wan, lanGW, lanAddr string) (router, host netns) {
	t := l.t
	t.Helper()
	router = l.newNS(routerRole)
	host = l.newNS(hostRole)
	l.plug(router, "wan", wan)
	l.wire(router, "lan", []string{lanGW}, host, "eth0", []string{lanAddr})
	gw, _, _ := strings.Cut(lanGW, "/")
	route := []string{"route", "add", "default", "via", gw}
	if strings.Contains(gw, ":") {
		route = append([]string{"-6"}, route...)
	}
	host.ip(t, route...)
	return router, host
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// countRule appends a rule without a target to chain (of the filter
// table) in n: it only counts the packets matching match, which go on
// to the rules after it. comment names it for readCount.
func (n netns) countRule(t *testing.T, iptables, chain, comment string, match ...string) {
	t.Helper()
	args := append([]string{iptables, "-A", chain}, match...)
	n.run(t, append(args, "-m", "comment", "--comment", comment)...)
}

// readCount returns the packets counted by the rule named comment.
func (n netns) readCount(t *testing.T, iptables, comment string) uint64 {
	t.Helper()
	out := n.run(t, iptables, "-nvxL")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, "/* "+comment+" */") {
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("in %s: counter %q: %v in %q", n.name, comment, err, line)
			}
			return v
		}
	}
	t.Fatalf("in %s: no rule %q in:\n%s", n.name, comment, out)
	return 0
}
