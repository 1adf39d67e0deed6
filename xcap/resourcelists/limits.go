package resourcelists

import (
	"errors"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// ErrTooLarge is returned (wrapped) by the parsers for a document above
// MaxSize; the XCAP server answers it with 413 rather than 409.
var ErrTooLarge = errors.New("resourcelists: document larger than 1 MiB")

// Limits enforced by the parsers: they bound what one document can cost.
const (
	MaxSize  = 1 << 20
	MaxDepth = 32
	// MaxItems bounds the lists, entries, entry-refs, externals and
	// services of one document together.
	MaxItems = 10000
)

// rules are the limits and error prefix the parsers apply; a function
// rather than a variable so that nothing can change them.
func rules() xmltext.Rules {
	return xmltext.Rules{Prefix: "resourcelists", MaxSize: MaxSize, MaxDepth: MaxDepth, TooLarge: ErrTooLarge}
}
