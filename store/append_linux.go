//go:build linux

package store

import (
	"os"
	"syscall"
	"unsafe"
)

// appendFile writes b to the end of f (opened O_APPEND) with write(2) as
// a raw system call. os.File.Write enters the call through the runtime's
// syscall entry, which wakes the runtime's monitor thread (sysmon) out of
// its deep sleep whenever the process was idle, after which it polls every
// 20 µs for a while: with a journal append per PUBLISH or REGISTER batch
// that was about a tenth of the server's CPU (BENCHMARKS.md, "the
// runtime's monitor"). A buffered append of a batch is a copy into the
// page cache, which blocks no more than a page fault on mapped memory
// does; the raw call keeps the P for that long instead of handing it off.
// The caller holds the lock that Close takes, so f's descriptor stays
// valid throughout.
func appendFile(f *os.File, b []byte) (int, error) {
	fd := f.Fd()
	n := 0
	for n < len(b) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[n])), uintptr(len(b)-n))
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN || e == 0 && r == 0:
			// Not a regular file after all: let os.File wait or name
			// the error.
			m, err := f.Write(b[n:])
			return n + m, err
		case e != 0:
			return n, &os.PathError{Op: "write", Path: f.Name(), Err: e}
		}
		n += int(r)
	}
	return n, nil
}
