package reginfo

import (
	"errors"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// ErrTooLarge is returned (wrapped) by Parse for a body above MaxSize; the
// caller answers it with 413 rather than 400.
var ErrTooLarge = errors.New("reginfo: document larger than 64 KiB")

// Limits enforced by Parse: they bound what one body can cost.
const (
	MaxSize  = 64 << 10
	MaxDepth = 32
)

// rules are the limits and error prefix Parse applies; a function rather
// than a variable so that nothing can change them.
func rules() xmltext.Rules {
	return xmltext.Rules{Prefix: "reginfo", MaxSize: MaxSize, MaxDepth: MaxDepth, TooLarge: ErrTooLarge}
}
