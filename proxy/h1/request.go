package h1

import (
	"bytes"
	"errors"
)

// The request-head parser (RFC 9112 §2-§7), strict where framing is
// concerned. The framing guard runs it over every HTTP/1.1 request head a
// client sends; it is written as a parser of complete heads into a reusable
// RequestHead (slices into the caller's buffer, no allocation once warm) so
// that a server loop can use it as its request parser too.
//
// What it refuses is what lets two HTTP/1.1 parsers disagree about where a
// request ends (RFC 9112 §11.2, request smuggling), and what net/http
// itself refuses:
//   - a line ending in a bare LF, or a CR anywhere but before the LF;
//   - obs-fold (a field line starting with white space), white space
//     before a field's colon, a field line without a colon, a field name
//     that is not a token, a field value with control characters;
//   - both Content-Length and Transfer-Encoding, Content-Length fields that
//     disagree or are not plain digits, a Transfer-Encoding other than one
//     "chunked", or any Transfer-Encoding in an HTTP/1.0 request (which
//     net/http ignores and a backend may not);
//   - a version other than HTTP/1.x, and the HTTP/2 preface (method PRI).
//
// Anything else is passed as it is: the target's syntax, the Host field
// and the like are net/http's to judge.

// Framing says how a request's body is delimited (RFC 9112 §6.3).
type Framing uint8

const (
	// NoBody is a request with neither Content-Length nor
	// Transfer-Encoding: it has no body.
	NoBody Framing = iota
	// Length is a body of RequestHead.Length bytes (Content-Length).
	Length
	// Chunked is a body in the chunked transfer coding.
	Chunked
)

// Field is one field line: its name as sent and its value without
// surrounding white space. Both point into the parsed buffer.
type Field struct {
	Name, Value []byte
}

// RequestHead is a parsed request head. Its byte slices point into the
// buffer it was parsed from. The zero value is an empty head, ready for
// ParseRequestHead (which reuses Fields' storage).
type RequestHead struct {
	Method []byte
	Target []byte
	// Minor is the x of HTTP/1.x.
	Minor  int
	Fields []Field
	// Framing and Length say where the body ends.
	Framing Framing
	Length  int64
	// Upgrade is set when the request asks to switch protocols (an Upgrade
	// field, and "upgrade" among Connection's tokens, as
	// httputil.ReverseProxy decides).
	Upgrade bool
}

// A FramingError is a request the guard refuses; its text is the reason
// given to the client.
type FramingError string

func (e FramingError) Error() string { return string(e) }

// The reasons, fixed so that refusing allocates nothing. They contain no
// character that needs escaping in JSON.
const (
	errBareLF            FramingError = "a line ends in a bare LF"
	errRequestLine       FramingError = "malformed request line"
	errVersion           FramingError = "unsupported HTTP version"
	errPriorKnowledge    FramingError = "HTTP/2 prior knowledge (PRI) on an HTTP/1.1 connection"
	errObsFold           FramingError = "obs-fold (a field line starting with white space)"
	errNoColon           FramingError = "a field line without a colon"
	errSpaceBeforeColon  FramingError = "white space before a field colon"
	errFieldName         FramingError = "a field name that is not a token"
	errFieldValue        FramingError = "a control character in a field value"
	errContentLength     FramingError = "malformed Content-Length"
	errConflictingLength FramingError = "conflicting Content-Length fields"
	errLengthAndChunked  FramingError = "both Content-Length and Transfer-Encoding"
	errTransferEncoding  FramingError = "a Transfer-Encoding other than chunked"
	errChunkedHTTP10     FramingError = "Transfer-Encoding in an HTTP/1.0 request"
	errHeadTooLarge      FramingError = "request head too large"
	errChunkSize         FramingError = "malformed chunk size"
	errChunkLine         FramingError = "chunk size line too long"
	errChunkEnd          FramingError = "chunk data not followed by CRLF"
	errTrailerTooLarge   FramingError = "trailer section too large"
)

// ErrIncomplete is returned by ParseRequestHead for a buffer that does not
// hold a whole head yet.
var ErrIncomplete = errors.New("incomplete request head")

// leadingCRorLF is how many CR or LF bytes before a request net/http's
// server drops (its numLeadingCRorLF of a 4-byte peek), for old clients
// that end a POST's body with an extra line end.
const leadingCRorLF = 4

// maxContentLengthDigits bounds a Content-Length: 18 digits cannot overflow
// an int64 (net/http allows 19, up to 2^63-1; no body is that large).
const maxContentLengthDigits = 18

// ParseRequestHead parses the request head at the start of b into h and
// returns its length, through the empty line that ends it. Empty lines
// before the request line are skipped (RFC 9112 §2.2): up to
// leadingCRorLF bytes of CR or LF in any order, as net/http's server
// discards them, then any CRLF lines. It returns ErrIncomplete if b ends
// before the head does, and a FramingError for a head to refuse.
func ParseRequestHead(b []byte, h *RequestHead) (int, error) {
	*h = RequestHead{Fields: h.Fields[:0]}
	pos := 0
	for pos < len(b) && pos < leadingCRorLF && (b[pos] == '\r' || b[pos] == '\n') {
		pos++
	}
	var line []byte
	for len(line) == 0 {
		var err error
		if line, pos, err = nextLine(b, pos); err != nil {
			return 0, err
		}
	}
	if err := h.parseRequestLine(line); err != nil {
		return 0, err
	}
	var (
		length                        []byte // the first Content-Length value
		transferCodings               int
		chunked, upgrade, connUpgrade bool
	)
	for {
		var err error
		if line, pos, err = nextLine(b, pos); err != nil {
			return 0, err
		}
		if len(line) == 0 {
			break
		}
		name, value, err := parseFieldLine(line)
		if err != nil {
			return 0, err
		}
		h.Fields = append(h.Fields, Field{Name: name, Value: value})
		switch {
		case equalFold(name, "Content-Length"):
			if length == nil {
				if _, ok := parseDecimal(value); !ok {
					return 0, errContentLength
				}
				length = value
			} else if !bytes.Equal(length, value) {
				return 0, errConflictingLength
			}
		case equalFold(name, "Transfer-Encoding"):
			transferCodings++
			chunked = equalFold(value, "chunked")
		case equalFold(name, "Upgrade"):
			upgrade = true
		case equalFold(name, "Connection"):
			connUpgrade = connUpgrade || listContains(value, "upgrade")
		}
	}
	switch {
	case transferCodings > 0 && length != nil:
		return 0, errLengthAndChunked
	case transferCodings > 0 && h.Minor == 0:
		return 0, errChunkedHTTP10
	case transferCodings > 1 || transferCodings == 1 && !chunked:
		return 0, errTransferEncoding
	case transferCodings == 1:
		h.Framing = Chunked
	case length != nil:
		h.Framing = Length
		h.Length, _ = parseDecimal(length)
	}
	h.Upgrade = upgrade && connUpgrade
	return pos, nil
}

// parseRequestLine parses method SP request-target SP HTTP-version.
func (h *RequestHead) parseRequestLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errRequestLine
	}
	h.Method, line = line[:sp], line[sp+1:]
	if !ValidFieldName(h.Method) {
		return errRequestLine
	}
	if sp = bytes.IndexByte(line, ' '); sp <= 0 {
		return errRequestLine
	}
	h.Target, line = line[:sp], line[sp+1:]
	for _, c := range h.Target {
		if c <= ' ' || c == 0x7f {
			return errRequestLine
		}
	}
	if string(h.Method) == "PRI" {
		return errPriorKnowledge
	}
	if len(line) != len("HTTP/1.1") || string(line[:7]) != "HTTP/1." || line[7] < '0' || line[7] > '9' {
		return errVersion
	}
	h.Minor = int(line[7] - '0')
	return nil
}

// parseFieldLine splits a field line into its name and trimmed value.
func parseFieldLine(line []byte) (name, value []byte, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, errObsFold
	}
	colon := bytes.IndexByte(line, ':')
	switch {
	case colon < 0:
		return nil, nil, errNoColon
	case colon > 0 && (line[colon-1] == ' ' || line[colon-1] == '\t'):
		return nil, nil, errSpaceBeforeColon
	case !ValidFieldName(line[:colon]):
		return nil, nil, errFieldName
	}
	value = trimOWS(line[colon+1:])
	if !ValidFieldValue(value) {
		return nil, nil, errFieldValue
	}
	return line[:colon], value, nil
}

// nextLine returns the line starting at pos (without its CRLF) and the
// position after it. A CR elsewhere in the line is left for the callers'
// validation, which refuses it as a control character.
func nextLine(b []byte, pos int) (line []byte, next int, err error) {
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 0 {
		return nil, 0, ErrIncomplete
	}
	end := pos + i
	if end == pos || b[end-1] != '\r' {
		return nil, 0, errBareLF
	}
	return b[pos : end-1], end + 1, nil
}

// headEnd returns the length of the head at the start of b (through the
// first empty line, with CRLF or bare LF ends, as net/http would see it),
// or -1 if b does not hold one yet. Searching starts at from (bytes before
// it are known not to hold the end).
func headEnd(b []byte, from int) int {
	for i := min(from, len(b)); ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		k := i + j + 1 // after this LF
		switch {
		case k < len(b) && b[k] == '\n':
			return k + 1
		case k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n':
			return k + 2
		}
		i = k
	}
}

// parseDecimal parses 1 to maxContentLengthDigits ASCII digits.
func parseDecimal(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > maxContentLengthDigits {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// maxChunkLine is net/http's limit on a chunk-size line (without CRLF).
const maxChunkLine = 4096

// maxChunkSize bounds a chunk: net/http accepts up to 16 hex digits (2^64-1);
// no real chunk is near 2^62, and the guard's counters stay in an int64.
const maxChunkSize = 1 << 62

// parseChunkSize parses a chunk-size line without its CRLF: 1*HEXDIG, then
// either nothing or a chunk extension (";" and anything without control
// characters; net/http ignores extensions). White space after the size is
// refused: net/http accepts "1 " but not "1 ;x", and RFC 9112 allows
// neither unless followed by an extension.
func parseChunkSize(line []byte) (int64, error) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d, ok := hexDigit(line[i])
		if !ok {
			break
		}
		if n >= maxChunkSize>>4 {
			return 0, errChunkSize
		}
		n = n<<4 | int64(d)
	}
	if i == 0 {
		return 0, errChunkSize
	}
	if i < len(line) && (line[i] != ';' || !ValidFieldValue(line[i+1:])) {
		return 0, errChunkSize
	}
	return n, nil
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
