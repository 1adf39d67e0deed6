package plane

// forward_bpf.o is committed so that building hlas needs no clang; this
// rebuilds it from bpf/forward.c (Debian: clang, llvm). The output is
// the same byte for byte with the same clang.
//go:generate sh -c "clang -O2 -g -Wall -target bpf -I/usr/include/$(gcc -print-multiarch) -c bpf/forward.c -o forward_bpf.o && llvm-strip -g forward_bpf.o"
