//go:build !linux

package store

import "os"

// appendFile writes b to the end of f (see append_linux.go).
func appendFile(f *os.File, b []byte) (int, error) { return f.Write(b) }
