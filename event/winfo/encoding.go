package winfo

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// toUTF8 returns the body as UTF-8, the only encoding the rest of the
// package handles: a UTF-8 byte order mark is dropped, and a body declared
// ISO-8859-1 or US-ASCII (some desk phones send latin-1) is transcoded.
// Other declared encodings are refused.
func toUTF8(b []byte) ([]byte, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	enc := declaredEncoding(b)
	switch strings.ToLower(enc) {
	case "", "utf-8", "utf8":
		return b, nil
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii":
	default:
		return nil, fmt.Errorf("winfo: unsupported encoding %q, want UTF-8", clip(enc))
	}
	n := 0
	for _, c := range b {
		if c >= utf8.RuneSelf {
			n++
		}
	}
	if n == 0 {
		return b, nil
	}
	out := make([]byte, 0, len(b)+n)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return out, nil
}

// declaredEncoding returns the encoding named in the XML declaration at
// the start of b, if any.
func declaredEncoding(b []byte) string {
	if !bytes.HasPrefix(b, []byte("<?xml")) {
		return ""
	}
	end := bytes.Index(b, []byte("?>"))
	if end < 0 {
		return ""
	}
	decl := string(b[5:end])
	i := strings.Index(decl, "encoding")
	if i < 0 {
		return ""
	}
	rest := strings.TrimLeft(decl[i+len("encoding"):], " \t\r\n")
	if !strings.HasPrefix(rest, "=") {
		return ""
	}
	rest = strings.TrimLeft(rest[1:], " \t\r\n")
	if rest == "" || (rest[0] != '"' && rest[0] != '\'') {
		return ""
	}
	q := rest[0]
	rest = rest[1:]
	if j := strings.IndexByte(rest, q); j >= 0 {
		return rest[:j]
	}
	return ""
}

// passThrough is the decoder's CharsetReader for bodies toUTF8 has already
// converted: their declaration still names the original encoding.
func passThrough(_ string, r io.Reader) (io.Reader, error) { return r, nil }
