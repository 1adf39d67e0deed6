package presrules

import (
	"errors"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// ErrTooLarge is returned (wrapped) by Parse for a document above
// MaxSize; the XCAP server answers it with 413 rather than 409.
var ErrTooLarge = errors.New("presrules: document larger than 256 KiB")

// Limits enforced by Parse: they bound what one document can cost,
// including the combination of its rules, which takes time in the
// product of identities and wildcards.
const (
	MaxSize       = 256 << 10
	MaxDepth      = 32
	MaxRules      = 1024
	MaxIdentities = 4096 // <one>, <many> and <except> elements together
)

// rules are the limits and error prefix Parse applies; a function rather
// than a variable so that nothing can change them.
func rules() xmltext.Rules {
	return xmltext.Rules{Prefix: "presrules", MaxSize: MaxSize, MaxDepth: MaxDepth, TooLarge: ErrTooLarge}
}
