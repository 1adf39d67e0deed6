#!/bin/sh
# bpf/build.sh OUT: compiles bpf/forward.c into the object the plane embeds
# (run from media/plane: go generate does, and so does
# TestForwardObjectUpToDate). Debian: clang, llvm. The output is the same
# byte for byte with the same clang, wherever the tree is (file prefix map).
set -eu
clang -O2 -g -Wall -Werror -target bpf -ffile-prefix-map="$PWD"=. \
	-I/usr/include/"$(gcc -print-multiarch)" -c bpf/forward.c -o "$1"
llvm-strip -g "$1"
