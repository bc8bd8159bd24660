package proxy

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
)

// StrictListener wraps a plain-HTTP traffic listener to guard it against
// request smuggling; rejected, if non-nil, is told each refusal's reason.
func StrictListener(ln net.Listener, rejected func(reason string)) net.Listener {
	return &strictListener{Listener: ln, rejected: rejected}
}

// strictListener guards the plain-HTTP traffic listener against request
// smuggling. net/http tolerates some ambiguous framing that it resolves
// safely for itself (Content-Length together with Transfer-Encoding: chunked,
// obs-folded header lines, bare LF line ends), but a front door should refuse
// it outright, as nginx and Envoy do: such a request is answered 400 and the
// connection closed before net/http has seen the request's last header line,
// so it is never forwarded.
//
// Each connection runs a small HTTP/1.1 framing state machine over the bytes
// it reads: header blocks are checked line by line, bodies are skipped by
// their Content-Length or chunk sizes, and the connection is left alone
// after an Upgrade or CONNECT. TLS listeners are not wrapped: net/http needs
// to see the *tls.Conn for HTTP/2, which has no such framing ambiguity.
type strictListener struct {
	net.Listener
	rejected func(reason string)
}

func (l *strictListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &strictConn{Conn: c, rejected: l.rejected}, nil
}

type framing uint8

const (
	inHeader framing = iota
	inBody
	inChunkSize
	inChunkData
	inChunkEnd
	inTrailer
	opaque
)

// maxLine bounds what is kept of one line; names and the few values checked
// sit at the start, and net/http answers 431 for oversized headers itself.
const maxLine = 8 << 10

type strictConn struct {
	net.Conn
	rejected func(reason string)

	mu          sync.Mutex // protects the framing state: net/http's background read may overlap a Read
	state       framing
	remaining   int64  // body or chunk bytes left to skip
	line        []byte // the current line, without its end
	lastCR      bool   // the previous byte was '\r'
	lineTooLong bool

	// Per-request header facts.
	sawRequestLine bool
	contentLength  string
	clCount        int
	teValues       []string
	upgrade        bool
	connUpgrade    bool
	connect        bool

	// switchPending: an upgrade or CONNECT was asked for and not answered
	// yet. A 101 (or a 2xx to CONNECT) makes the connection opaque; any
	// other answer means it stays HTTP and stays checked.
	switchPending  bool
	connectPending bool
	chunkCRLF      int
}

// Write watches the server's answer to an upgrade or CONNECT request.
func (c *strictConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.switchPending && len(p) >= len("HTTP/1.1 101") && bytes.HasPrefix(p, []byte("HTTP/1.")) {
		code := string(p[9:12])
		if code == "101" || (c.connectPending && code[0] == '2') {
			c.state = opaque
		}
		if code[0] != '1' || code == "101" { // not a 100 Continue or 103 Early Hints
			c.switchPending, c.connectPending = false, false
		}
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection when the wrapped one can, so
// net/http's graceful close after an error still works through the guard.
func (c *strictConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *strictConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		reason := c.scan(p[:n])
		c.mu.Unlock()
		if reason != "" {
			c.reject(reason)
			return 0, io.EOF
		}
	}
	return n, err
}

func (c *strictConn) reject(reason string) {
	if c.rejected != nil {
		c.rejected(reason)
	}
	body := "400 Bad Request: " + reason + "\n"
	io.WriteString(c.Conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
	c.Conn.Close()
}

// scan advances the framing state over b and returns a reason to reject, or "".
func (c *strictConn) scan(b []byte) string {
	for len(b) > 0 {
		switch c.state {
		case opaque:
			return ""
		case inBody, inChunkData:
			k := int64(len(b))
			if k > c.remaining {
				k = c.remaining
			}
			c.remaining -= k
			b = b[k:]
			if c.remaining == 0 {
				if c.state == inBody {
					c.state = inHeader
				} else {
					c.state, c.chunkCRLF = inChunkEnd, 0
				}
			}
		case inChunkEnd:
			want := "\r\n"[c.chunkCRLF]
			if b[0] != want {
				return "chunk data not followed by CRLF"
			}
			b = b[1:]
			if c.chunkCRLF++; c.chunkCRLF == 2 {
				c.state = inChunkSize
			}
		default: // line-oriented states
			i := bytes.IndexByte(b, '\n')
			chunk := b
			if i >= 0 {
				chunk = b[:i]
			}
			if len(chunk) > 0 {
				c.lastCR = chunk[len(chunk)-1] == '\r'
				if room := maxLine - len(c.line); room > 0 {
					c.line = append(c.line, chunk[:min(room, len(chunk))]...)
				} else {
					c.lineTooLong = true
				}
			}
			if i < 0 {
				return ""
			}
			b = b[i+1:]
			if !c.lastCR {
				return "line ends in a bare LF"
			}
			line := c.line[:len(c.line)-1] // without '\r'
			if c.lineTooLong && len(c.line) >= maxLine {
				line = c.line
			}
			reason := c.endOfLine(line)
			c.line, c.lastCR, c.lineTooLong = c.line[:0], false, false
			if reason != "" {
				return reason
			}
		}
	}
	return ""
}

// endOfLine handles one complete line in a line-oriented state.
func (c *strictConn) endOfLine(line []byte) string {
	switch c.state {
	case inChunkSize:
		size := line
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimRight(size, " \t")), 16, 64)
		if err != nil || n < 0 || len(size) == 0 {
			return "malformed chunk size"
		}
		if n == 0 {
			c.state = inTrailer
		} else {
			c.state, c.remaining = inChunkData, n
		}
		return ""
	case inTrailer:
		if len(line) == 0 {
			c.state = inHeader
			c.resetRequest()
			return ""
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "obs-fold in a trailer"
		}
		return ""
	}
	// inHeader
	if !c.sawRequestLine {
		if len(line) == 0 {
			return "" // RFC 9112 §2.2: empty lines before a request line are ignored
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "request line starts with white space"
		}
		c.sawRequestLine = true
		method, rest, _ := bytes.Cut(line, []byte(" "))
		c.connect = string(method) == "CONNECT"
		if bytes.HasSuffix(rest, []byte("HTTP/2.0")) {
			c.state = opaque // HTTP/2 prior knowledge: not ours to check
		}
		return ""
	}
	if len(line) == 0 {
		return c.endOfHeaders()
	}
	if line[0] == ' ' || line[0] == '\t' {
		return "obs-fold (a header line starting with white space)"
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return "a header line without a colon"
	}
	if len(name) == 0 || name[len(name)-1] == ' ' || name[len(name)-1] == '\t' {
		return "white space before a header colon"
	}
	value = bytes.Trim(value, " \t")
	switch {
	case asciiEqualFold(string(name), "Content-Length"):
		c.clCount++
		if c.clCount > 1 && string(value) != c.contentLength {
			return "conflicting Content-Length headers"
		}
		c.contentLength = string(value)
	case asciiEqualFold(string(name), "Transfer-Encoding"):
		c.teValues = append(c.teValues, string(value))
	case asciiEqualFold(string(name), "Upgrade"):
		c.upgrade = true
	case asciiEqualFold(string(name), "Connection"):
		if bytes.Contains(bytes.ToLower(value), []byte("upgrade")) {
			c.connUpgrade = true
		}
	}
	return ""
}

func (c *strictConn) endOfHeaders() string {
	defer c.resetRequest()
	if len(c.teValues) > 0 {
		if c.clCount > 0 {
			return "both Content-Length and Transfer-Encoding"
		}
		if len(c.teValues) > 1 || !asciiEqualFold(c.teValues[0], "chunked") {
			return "a Transfer-Encoding other than chunked"
		}
		c.state = inChunkSize
	} else if c.clCount > 0 {
		n, err := strconv.ParseInt(c.contentLength, 10, 64)
		if err != nil || n < 0 {
			return "malformed Content-Length"
		}
		if n > 0 {
			c.state, c.remaining = inBody, n
		}
	}
	if (c.connect || (c.upgrade && c.connUpgrade)) && c.state == inHeader {
		// After a successful CONNECT or upgrade the bytes are another
		// protocol's; until the answer shows which, checking goes on
		// (Write watches the status line).
		c.switchPending = true
		c.connectPending = c.connect
	}
	return ""
}

func (c *strictConn) resetRequest() {
	c.sawRequestLine = false
	c.contentLength, c.clCount, c.teValues = "", 0, c.teValues[:0]
	c.upgrade, c.connUpgrade, c.connect = false, false, false
}
