package rlmi

import (
	"errors"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// ErrTooLarge is returned (wrapped) by Parse and ParseMultipart for a body
// above their size limit; the caller answers it with 413 rather than 400.
var ErrTooLarge = errors.New("rlmi: body too large")

// Limits enforced by Parse and ParseMultipart: they bound what one body
// can cost. A list NOTIFY carries the RLMI document and one part per
// resource instance, so the multipart body may be much larger than the
// document.
const (
	MaxSize      = 256 << 10
	MaxDepth     = 32
	MaxResources = 4096 // <resource> elements in one document
	MaxInstances = 64   // <instance> elements of one resource
	MaxNames     = 16   // <name> elements of the list or of one resource

	MaxMultipartSize = 2 << 20
	MaxParts         = 1000 // body parts, the root included
)

// rules are the limits and error prefix Parse applies; a function rather
// than a variable so that nothing can change them.
func rules() xmltext.Rules {
	return xmltext.Rules{Prefix: "rlmi", MaxSize: MaxSize, MaxDepth: MaxDepth, TooLarge: ErrTooLarge}
}
