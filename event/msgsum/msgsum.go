// Package msgsum writes and reads message summaries, the bodies of the
// message-summary event package that lights message-waiting lamps
// (RFC 3842, application/simple-message-summary).
package msgsum

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// ContentType is the media type of a message summary (RFC 3842 §5.1).
const ContentType = "application/simple-message-summary"

// MaxSize bounds the bodies Parse accepts.
const MaxSize = 64 << 10

// ErrTooLarge is returned (wrapped) by Parse for a body above MaxSize.
var ErrTooLarge = errors.New("msgsum: body larger than 64 KiB")

// Counts are the messages of one message-context class (RFC 3842 §5.2:
// new/old, and of those the urgent ones).
type Counts struct {
	New, Old             uint32
	UrgentNew, UrgentOld uint32
}

// IsZero reports whether all counts are zero.
func (c Counts) IsZero() bool { return c == Counts{} }

// Summary is a message summary of one mailbox.
type Summary struct {
	// Waiting is the Messages-Waiting status: true when there are new
	// messages (it drives the lamp).
	Waiting bool
	// Account is the Message-Account URI, empty when not given.
	Account string
	// Counts per message-context class (RFC 3458 §4.2).
	Voice, Fax, Pager, Multimedia, Text, None Counts
	// Details are the optional message headers that follow the summary
	// after an empty line (RFC 3842 §5.2), as text with CRLF line ends.
	Details string
}

// classes lists the summary lines in the order Marshal writes them.
func (s *Summary) classes() [6]struct {
	name string
	c    *Counts
} {
	return [6]struct {
		name string
		c    *Counts
	}{
		{"Voice-Message", &s.Voice}, {"Fax-Message", &s.Fax}, {"Pager-Message", &s.Pager},
		{"Multimedia-Message", &s.Multimedia}, {"Text-Message", &s.Text}, {"None", &s.None},
	}
}

// Marshal writes the summary: Messages-Waiting, Message-Account when set,
// the Voice-Message line always (phones expect it, even at 0/0) and the
// other classes when not all zero, each with its urgent counts, then the
// details. Control characters are dropped from the account so that it
// cannot add lines of its own, and a blank account is left out.
func (s Summary) Marshal() []byte {
	b := make([]byte, 0, 96+len(s.Account)+len(s.Details))
	if s.Waiting {
		b = append(b, "Messages-Waiting: yes\r\n"...)
	} else {
		b = append(b, "Messages-Waiting: no\r\n"...)
	}
	if acct := strings.TrimSpace(strings.Map(dropControl, s.Account)); acct != "" {
		b = append(b, "Message-Account: "...)
		b = append(b, acct...)
		b = append(b, "\r\n"...)
	}
	for i, cl := range s.classes() {
		c := *cl.c
		if i > 0 && c.IsZero() {
			continue
		}
		b = append(b, cl.name...)
		b = append(b, ": "...)
		b = strconv.AppendUint(b, uint64(c.New), 10)
		b = append(b, '/')
		b = strconv.AppendUint(b, uint64(c.Old), 10)
		b = append(b, " ("...)
		b = strconv.AppendUint(b, uint64(c.UrgentNew), 10)
		b = append(b, '/')
		b = strconv.AppendUint(b, uint64(c.UrgentOld), 10)
		b = append(b, ")\r\n"...)
	}
	if d := normalizeDetails(s.Details); d != "" {
		b = append(b, "\r\n"...)
		b = append(b, d...)
	}
	return b
}

// Parse reads a message summary. Messages-Waiting is required; header
// names are case-insensitive and LF line ends are accepted as well as
// CRLF; lines that are not of RFC 3842 but look like headers are ignored.
// Errors say what is wrong, fit for the Warning of a 400.
func Parse(b []byte) (Summary, error) {
	var s Summary
	if len(b) > MaxSize {
		return s, fmt.Errorf("%w (%d bytes)", ErrTooLarge, len(b))
	}
	text := string(b)
	seen := 0 // bit per header already read
	started := false
	for len(text) > 0 {
		line := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			if !started {
				continue // blank lines before the summary
			}
			s.Details = normalizeDetails(text)
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || line[0] == ' ' || line[0] == '\t' {
			return s, fmt.Errorf("msgsum: line %q is not a header", xmltext.Clip(line))
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				return s, fmt.Errorf("msgsum: control character in line %q", xmltext.Clip(line))
			}
		}
		if !utf8.ValidString(line) {
			return s, fmt.Errorf("msgsum: line %q is not UTF-8", xmltext.Clip(line))
		}
		started = true
		name = strings.TrimRight(name, " \t")
		value = strings.TrimSpace(value)
		bit, err := s.header(name, value)
		if err != nil {
			return s, err
		}
		if bit != 0 && seen&bit != 0 {
			return s, fmt.Errorf("msgsum: %s given twice", name)
		}
		seen |= bit
	}
	if seen&1 == 0 {
		return s, errors.New("msgsum: no Messages-Waiting line")
	}
	return s, nil
}

// header stores one summary line; it returns the header's bit in the set
// of headers seen, 0 for a header it does not know.
func (s *Summary) header(name, value string) (int, error) {
	switch {
	case strings.EqualFold(name, "Messages-Waiting"):
		switch {
		case strings.EqualFold(value, "yes"):
			s.Waiting = true
		case strings.EqualFold(value, "no"):
			s.Waiting = false
		default:
			return 0, fmt.Errorf("msgsum: Messages-Waiting is %q, want yes or no", xmltext.Clip(value))
		}
		return 1, nil
	case strings.EqualFold(name, "Message-Account"):
		if value == "" {
			return 0, errors.New("msgsum: empty Message-Account")
		}
		s.Account = value
		return 2, nil
	}
	for i, cl := range s.classes() {
		if strings.EqualFold(name, cl.name) {
			c, err := parseCounts(value)
			if err != nil {
				return 0, fmt.Errorf("msgsum: %s: %v", cl.name, err)
			}
			*cl.c = c
			return 4 << i, nil
		}
	}
	return 0, nil
}

// parseCounts reads "new/old" with an optional "(urgent-new/urgent-old)",
// white space allowed around the separators (RFC 3842 §5.2).
func parseCounts(v string) (Counts, error) {
	var c Counts
	p := counter{s: v}
	var ok bool
	if c.New, ok = p.number(); !ok || !p.expect('/') {
		return c, fmt.Errorf("%q is not new/old", xmltext.Clip(v))
	}
	if c.Old, ok = p.number(); !ok {
		return c, fmt.Errorf("%q is not new/old", xmltext.Clip(v))
	}
	if p.expect('(') {
		if c.UrgentNew, ok = p.number(); !ok || !p.expect('/') {
			return c, fmt.Errorf("%q: urgent counts are not (new/old)", xmltext.Clip(v))
		}
		if c.UrgentOld, ok = p.number(); !ok || !p.expect(')') {
			return c, fmt.Errorf("%q: urgent counts are not (new/old)", xmltext.Clip(v))
		}
	}
	if p.skip(); p.s != "" {
		return c, fmt.Errorf("%q has trailing text", xmltext.Clip(v))
	}
	return c, nil
}

type counter struct{ s string }

func (p *counter) skip() { p.s = strings.TrimLeft(p.s, " \t") }

func (p *counter) expect(c byte) bool {
	p.skip()
	if p.s == "" || p.s[0] != c {
		return false
	}
	p.s = p.s[1:]
	return true
}

func (p *counter) number() (uint32, bool) {
	p.skip()
	i := 0
	for i < len(p.s) && p.s[i] >= '0' && p.s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseUint(p.s[:i], 10, 32)
	if err != nil {
		return 0, false
	}
	p.s = p.s[i:]
	return uint32(n), true
}

// dropControl removes the characters that could end or corrupt a line.
func dropControl(r rune) rune {
	if (r < 0x20 && r != '\t') || r == 0x7f {
		return -1
	}
	return r
}

// normalizeDetails gives the details CRLF line ends, a final CRLF, and no
// trailing blank lines, so that Marshal and Parse agree on them.
func normalizeDetails(d string) string {
	var b strings.Builder
	pending := 0 // blank lines held back until a non-blank one follows
	for len(d) > 0 {
		line := d
		if i := strings.IndexByte(d, '\n'); i >= 0 {
			line, d = d[:i], d[i+1:]
		} else {
			d = ""
		}
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			pending++
			continue
		}
		for ; pending > 0; pending-- {
			b.WriteString("\r\n")
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	return b.String()
}
