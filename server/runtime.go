package server

import (
	"os"
	"runtime/debug"
)

// applyRuntime sets the garbage collector's knobs of Config.Runtime that
// are set, unless the environment (GOGC, GOMEMLIMIT) already does: the
// environment wins. What it replaces is kept for restoreRuntime. The knobs
// are the process's, not the server's: a second server in the same
// process overrides the first.
func (s *Server) applyRuntime() {
	rt := s.cfg.Runtime
	if rt.GCPercent != 0 {
		if env := os.Getenv("GOGC"); env != "" {
			s.log.Info("runtime.gc_percent ignored: GOGC is set", "GOGC", env)
		} else {
			prev := int64(debug.SetGCPercent(rt.GCPercent))
			s.gcPercent = &prev
			s.log.Info("runtime", "gc_percent", rt.GCPercent)
		}
	}
	if rt.MemoryLimit != "" {
		if env := os.Getenv("GOMEMLIMIT"); env != "" {
			s.log.Info("runtime.memory_limit ignored: GOMEMLIMIT is set", "GOMEMLIMIT", env)
		} else if n, err := parseBytes(rt.MemoryLimit); err == nil { // checked by Validate
			prev := debug.SetMemoryLimit(n)
			s.memLimit = &prev
			s.log.Info("runtime", "memory_limit", rt.MemoryLimit)
		}
	}
}

// restoreRuntime puts back what applyRuntime changed.
func (s *Server) restoreRuntime() {
	if s.gcPercent != nil {
		debug.SetGCPercent(int(*s.gcPercent))
		s.gcPercent = nil
	}
	if s.memLimit != nil {
		debug.SetMemoryLimit(*s.memLimit)
		s.memLimit = nil
	}
}
