package rlmi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"slices"
	"strings"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// Part is one body part of a multipart/related body.
type Part struct {
	// CID is the part's Content-ID without the angle brackets, the value
	// an <instance cid> refers to; "" when the part has none.
	CID string
	// ContentType is the part's full Content-Type value, parameters
	// included ("application/pidf+xml;charset=UTF-8").
	ContentType string
	Body        []byte
}

// Multipart builds the body of a list NOTIFY (RFC 4662 §5): a
// multipart/related body (RFC 2387) whose root part is the RLMI document
// rlmiDoc with Content-ID rootCID, followed by parts in order. It returns
// the value of the Content-Type header, which names the root as start.
// Every part is sent binary, so the caller chooses a boundary that occurs
// in none of the bodies; Multipart checks it, and that Content-IDs are
// distinct and fit in a header, and fails rather than write a body the
// watcher would split wrongly.
func Multipart(boundary, rootCID string, rlmiDoc []byte, parts []Part) (contentType string, body []byte, err error) {
	if err := checkBoundary(boundary); err != nil {
		return "", nil, err
	}
	if err := checkCID(rootCID); err != nil {
		return "", nil, err
	}
	delim := []byte(boundary)
	if bytes.Contains(rlmiDoc, delim) {
		return "", nil, fmt.Errorf("rlmi: boundary %q occurs in the RLMI document", xmltext.Clip(boundary))
	}
	size := 2*len(boundary) + len(rootCID) + len(rlmiDoc) + 128
	seen := make(map[string]struct{}, len(parts)+1)
	seen[rootCID] = struct{}{}
	for i := range parts {
		p := &parts[i]
		if err := checkCID(p.CID); err != nil {
			return "", nil, err
		}
		if _, dup := seen[p.CID]; dup {
			return "", nil, fmt.Errorf("rlmi: Content-ID %q used twice", xmltext.Clip(p.CID))
		}
		seen[p.CID] = struct{}{}
		// The parts of a list share one or two content types: each is
		// parsed once, not once a part.
		if i == 0 || p.ContentType != parts[i-1].ContentType {
			if err := checkContentType(p.ContentType); err != nil {
				return "", nil, fmt.Errorf("rlmi: part %q: %v", xmltext.Clip(p.CID), err)
			}
		}
		if bytes.Contains(p.Body, delim) {
			return "", nil, fmt.Errorf("rlmi: boundary %q occurs in part %q", xmltext.Clip(boundary), xmltext.Clip(p.CID))
		}
		size += len(boundary) + len(p.CID) + len(p.ContentType) + len(p.Body) + 72
	}
	body = make([]byte, 0, size)
	body = appendPart(body, boundary, rootCID, ContentType+`;charset="UTF-8"`, rlmiDoc)
	for i := range parts {
		body = appendPart(body, boundary, parts[i].CID, parts[i].ContentType, parts[i].Body)
	}
	body = append(body, "--"...)
	body = append(body, boundary...)
	body = append(body, "--\r\n"...)
	contentType = `multipart/related;type="` + ContentType + `";start="<` + rootCID + `>";boundary="` + boundary + `"`
	return contentType, body, nil
}

func appendPart(b []byte, boundary, cid, contentType string, body []byte) []byte {
	b = append(b, "--"...)
	b = append(b, boundary...)
	b = append(b, "\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <"...)
	b = append(b, cid...)
	b = append(b, ">\r\nContent-Type: "...)
	b = append(b, contentType...)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	return append(b, "\r\n"...)
}

// checkBoundary enforces the boundary syntax of RFC 2046 §5.1.1.
func checkBoundary(b string) error {
	if b == "" || len(b) > 70 || b[len(b)-1] == ' ' {
		return fmt.Errorf("rlmi: boundary %q: want 1 to 70 characters, not ending in a space", xmltext.Clip(b))
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("'()+_,-./:=? ", c) >= 0) {
			return fmt.Errorf("rlmi: boundary %q: character %q is not allowed", xmltext.Clip(b), c)
		}
	}
	return nil
}

// checkCID accepts what can stand between the angle brackets of a
// Content-ID header and inside the quoted start parameter.
func checkCID(cid string) error {
	if cid == "" {
		return errors.New("rlmi: empty Content-ID")
	}
	for i := 0; i < len(cid); i++ {
		if c := cid[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == '\\' {
			return fmt.Errorf("rlmi: Content-ID %q: character %q is not allowed", xmltext.Clip(cid), c)
		}
	}
	return nil
}

func checkContentType(ct string) error {
	for i := 0; i < len(ct); i++ {
		if c := ct[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("control character in Content-Type %q", xmltext.Clip(ct))
		}
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return fmt.Errorf("Content-Type %q: %v", xmltext.Clip(ct), err)
	}
	return nil
}

// ParseMultipart splits a multipart/related body, as received in a list
// NOTIFY, into its root part (the one the start parameter names, else the
// first) and the other parts in order. A part nested in it, the state of
// a sub-list, stays whole: call ParseMultipart on it again. Bodies sent
// base64 or quoted-printable are decoded. At most MaxMultipartSize bytes
// and MaxParts parts are read.
func ParseMultipart(contentType string, body []byte) (root Part, parts []Part, err error) {
	if len(body) > MaxMultipartSize {
		return Part{}, nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, len(body))
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return Part{}, nil, fmt.Errorf("rlmi: Content-Type %q: %v", xmltext.Clip(contentType), err)
	}
	if mt != "multipart/related" {
		return Part{}, nil, fmt.Errorf("rlmi: Content-Type is %q, want multipart/related", xmltext.Clip(mt))
	}
	boundary := params["boundary"]
	if boundary == "" {
		return Part{}, nil, errors.New("rlmi: multipart/related without boundary")
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	var all []Part
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Part{}, nil, fmt.Errorf("rlmi: multipart body: %v", err)
		}
		if len(all) == MaxParts {
			return Part{}, nil, fmt.Errorf("rlmi: more than %d body parts", MaxParts)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return Part{}, nil, fmt.Errorf("rlmi: multipart body: %v", err)
		}
		part := Part{
			CID:         trimCID(p.Header.Get("Content-ID")),
			ContentType: strings.TrimSpace(p.Header.Get("Content-Type")),
		}
		if part.Body, err = decodeTransfer(p.Header.Get("Content-Transfer-Encoding"), data); err != nil {
			return Part{}, nil, fmt.Errorf("rlmi: part %d: %v", len(all)+1, err)
		}
		all = append(all, part)
	}
	if len(all) == 0 {
		return Part{}, nil, errors.New("rlmi: multipart body without parts")
	}
	i := 0
	if start := trimCID(params["start"]); start != "" {
		if i = slices.IndexFunc(all, func(p Part) bool { return p.CID == start }); i < 0 {
			return Part{}, nil, fmt.Errorf("rlmi: no part has the start Content-ID %q", xmltext.Clip(start))
		}
	}
	root = all[i]
	return root, slices.Delete(all, i, i+1), nil
}

// decodeTransfer undoes a Content-Transfer-Encoding; RFC 4662 servers send
// binary, but a body relayed through a mail-minded library may not be.
func decodeTransfer(cte string, data []byte) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "binary", "8bit", "7bit":
		return data, nil
	case "base64":
		out, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(data)), ""))
		if err != nil {
			return nil, fmt.Errorf("base64: %v", err)
		}
		return out, nil
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(data)))
		if err != nil {
			return nil, fmt.Errorf("quoted-printable: %v", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("Content-Transfer-Encoding %q is not supported", xmltext.Clip(cte))
}
