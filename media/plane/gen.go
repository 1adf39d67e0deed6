package plane

// forward_bpf.o is committed so that building hlas needs no clang; this
// rebuilds it from bpf/forward.c (TestForwardObjectUpToDate checks that
// it was).
//go:generate sh bpf/build.sh forward_bpf.o
