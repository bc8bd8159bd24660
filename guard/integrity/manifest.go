package integrity

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// MaxLineLength is the longest manifest line ParseManifest accepts, in
// bytes, excluding the newline. It bounds the parser's memory per line; real
// paths are far shorter (PATH_MAX is 4096 on Linux).
const MaxLineLength = 64 << 10

// Sentinel errors of ParseManifest, matched with errors.Is.
var (
	// ErrMalformedLine is a line that is neither a checksum line, a comment
	// nor blank.
	ErrMalformedLine = errors.New("malformed manifest line")
	// ErrDuplicatePath is a path listed twice (after lexical cleaning, so
	// "a" and "./a" are the same file).
	ErrDuplicatePath = errors.New("duplicate path in manifest")
	// ErrNoEntries is a manifest without a single checksum line; like GNU
	// sha256sum -c it is an error, since an empty manifest would vouch for
	// nothing.
	ErrNoEntries = errors.New("no checksum lines in manifest")
)

// ParseError is a manifest problem tied to one line.
type ParseError struct {
	// Line is the 1-based line number.
	Line int
	// Reason says what is wrong with the line.
	Reason string
	// Err is the sentinel (ErrMalformedLine or ErrDuplicatePath).
	Err error
}

// Error implements error.
func (e *ParseError) Error() string {
	return fmt.Sprintf("line %d: %v: %s", e.Line, e.Err, e.Reason)
}

// Unwrap returns the sentinel.
func (e *ParseError) Unwrap() error { return e.Err }

// ParseManifest reads a sha256sum-format manifest.
//
// Accepted lines, one per entry:
//
//	<64 hex digits><space><space><path>   text mode (sha256sum's default)
//	<64 hex digits><space>*<path>         binary mode (sha256sum -b)
//	SHA256 (<path>) = <64 hex digits>     BSD tag form (sha256sum --tag)
//
// Hex digits may be upper or lower case. A line that starts with a backslash
// uses GNU's escaping in its path: "\\" is a backslash, "\n" a newline and
// "\r" a carriage return; any other escape is an error. A trailing "\r" (a
// CRLF line end) is removed.
//
// Blank lines (only spaces and tabs) and lines whose first character is '#'
// are skipped, always: they are never an error and never an entry. Any other
// line that does not match is an error naming its line number, as is a path
// listed twice, an empty path or one containing a NUL byte, and a manifest
// with no entries at all. Paths are not checked against a root here: "../x"
// or "/etc/passwd" parse, and Verifier.Verify reports them as failures.
func ParseManifest(r io.Reader) ([]Entry, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		entries []Entry
		seen    = make(map[string]int)
		lineNo  int
		long    []byte
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(chunk) > MaxLineLength+2 {
				return nil, &ParseError{Line: lineNo + 1, Reason: fmt.Sprintf("longer than %d bytes", MaxLineLength), Err: ErrMalformedLine}
			}
			long = append(long, chunk...)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		line := chunk
		if long != nil {
			line = append(long, chunk...)
			long = nil
		}
		if len(line) == 0 && err != nil {
			break
		}
		lineNo++
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > MaxLineLength {
			return nil, &ParseError{Line: lineNo, Reason: fmt.Sprintf("longer than %d bytes", MaxLineLength), Err: ErrMalformedLine}
		}
		if isSkipped(line) {
			if err != nil {
				break
			}
			continue
		}
		e, perr := parseLine(line)
		if perr != "" {
			return nil, &ParseError{Line: lineNo, Reason: perr, Err: ErrMalformedLine}
		}
		e.Line = lineNo
		key := cleanKey(e.Path)
		if first, dup := seen[key]; dup {
			return nil, &ParseError{Line: lineNo, Reason: fmt.Sprintf("%q already listed on line %d", e.Path, first), Err: ErrDuplicatePath}
		}
		seen[key] = lineNo
		entries = append(entries, e)
		if err != nil {
			break
		}
	}
	if len(entries) == 0 {
		return nil, ErrNoEntries
	}
	return entries, nil
}

// isSkipped reports whether a line is blank or a comment.
func isSkipped(line []byte) bool {
	if len(line) > 0 && line[0] == '#' {
		return true
	}
	return len(bytes.Trim(line, " \t")) == 0
}

// cleanKey is the identity of a path for duplicate detection.
func cleanKey(p string) string { return path.Clean(p) }

const (
	hexLen = 64
	bsdTag = "SHA256 ("
	bsdSep = ") = "
)

// parseLine parses one non-skipped line; the string is the reason it is
// malformed, "" when it is not.
func parseLine(line []byte) (Entry, string) {
	var e Entry
	escaped := len(line) > 0 && line[0] == '\\'
	if escaped {
		line = line[1:]
	}
	var rawPath, rawSum []byte
	switch {
	case bytes.HasPrefix(line, []byte(bsdTag)):
		if len(line) < len(bsdTag)+len(bsdSep)+hexLen || !bytes.HasSuffix(line[:len(line)-hexLen], []byte(bsdSep)) {
			return e, `tag line is not "SHA256 (path) = <64 hex digits>"`
		}
		rawSum = line[len(line)-hexLen:]
		rawPath = line[len(bsdTag) : len(line)-hexLen-len(bsdSep)]
	default:
		if len(line) < hexLen+2 || line[hexLen] != ' ' || (line[hexLen+1] != ' ' && line[hexLen+1] != '*') {
			return e, `want "<64 hex digits>  <path>" or "<64 hex digits> *<path>"`
		}
		rawSum = line[:hexLen]
		e.Binary = line[hexLen+1] == '*'
		rawPath = line[hexLen+2:]
	}
	if _, err := hex.Decode(e.Sum[:], rawSum); err != nil {
		return e, "checksum is not 64 hex digits"
	}
	if escaped {
		p, ok := unescape(rawPath)
		if !ok {
			return e, `bad escape in path (only \\, \n and \r are allowed)`
		}
		e.Path = p
	} else {
		e.Path = string(rawPath)
	}
	switch {
	case e.Path == "":
		return e, "empty path"
	case strings.IndexByte(e.Path, 0) >= 0:
		return e, "path contains a NUL byte"
	}
	return e, ""
}

// unescape undoes GNU's path escaping.
func unescape(b []byte) (string, bool) {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b), true
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			sb.WriteByte(c)
			continue
		}
		if i+1 == len(b) {
			return "", false
		}
		i++
		switch b[i] {
		case '\\':
			sb.WriteByte('\\')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		default:
			return "", false
		}
	}
	return sb.String(), true
}

// String renders the entry as one sha256sum line (without the newline),
// escaping the path the way GNU sha256sum does when it holds a backslash,
// newline or carriage return. ParseManifest reads it back to the same
// Path, Sum and Binary.
func (e Entry) String() string {
	marker := " "
	if e.Binary {
		marker = "*"
	}
	p := e.Path
	prefix := ""
	if strings.ContainsAny(p, "\\\n\r") {
		prefix = `\`
		p = strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace(p)
	}
	return prefix + hex.EncodeToString(e.Sum[:]) + " " + marker + p
}

// WriteManifest writes entries in sha256sum format, one line each.
func WriteManifest(w io.Writer, entries []Entry) error {
	bw := bufio.NewWriter(w)
	for _, e := range entries {
		bw.WriteString(e.String())
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}
