//go:build unix

package server

import "syscall"

// cpuTime returns the CPU time the process has used (user and system), in
// nanoseconds: on a shared machine it measures the benchmark's own work
// where wall time also counts the neighbours'.
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
