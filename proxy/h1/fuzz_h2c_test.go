package h1

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// chunkConn hands its data to Read step bytes at a time and keeps what is
// written to it.
type chunkConn struct {
	net.Conn
	data   []byte
	step   int
	wrote  bytes.Buffer
	closed bool
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(c.step, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error) { return c.wrote.Write(p) }
func (c *chunkConn) Close() error                { c.closed = true; return nil }

// h2cVerdict reads raw through a guarded connection that allows h2c, step
// bytes at a time, and reports whether the guard refused it and whether it
// let it through as HTTP/2.
func h2cVerdict(raw []byte, step int) (refused, opaque bool) {
	cc := &chunkConn{data: raw, step: step}
	g := newGuardConn(cc, &GuardConfig{AllowH2C: true}, nil)
	buf := make([]byte, 4096)
	for {
		if _, err := g.Read(buf); err != nil {
			break
		}
	}
	return cc.wrote.Len() > 0, g.opaque.Load()
}

// FuzzGuardH2C holds the guard with AllowH2C to the guard without it: a
// stream that opens with the whole HTTP/2 preface passes unguarded; any
// other stream gets exactly the verdict it gets without AllowH2C (the bytes
// held back while they might begin the preface are scanned all the same),
// however it is split into reads. A stream that ends within the preface is
// undecided: those bytes (nothing but the preface's start, a PRI head at
// most) reach net/http, which answers the PRI request through the handler
// (400).
func FuzzGuardH2C(f *testing.F) {
	f.Add([]byte(h2Preface))
	f.Add([]byte(h2Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n" + h2Preface))
	for _, s := range smuggling {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 64<<10 {
			return
		}
		_, refusal := guardStream(raw, len(raw)+1)
		preface := bytes.HasPrefix(raw, []byte(h2Preface))
		partial := len(raw) < len(h2Preface) && bytes.HasPrefix([]byte(h2Preface), raw)
		for _, step := range []int{1, 7, len(raw) + 1} {
			refused, opaque := h2cVerdict(raw, step)
			switch {
			case preface && (refused || !opaque):
				t.Fatalf("step %d: a stream opening with the preface was refused %v, passed as HTTP/2 %v; want passed", step, refused, opaque)
			case !preface && opaque:
				t.Fatalf("step %d: a stream not opening with the preface passed unguarded", step)
			case partial && refused:
				t.Fatalf("step %d: a stream ending within the preface was refused", step)
			case !preface && !partial && refused != (refusal != nil):
				t.Fatalf("step %d: refused %v with AllowH2C, refusal %v without", step, refused, refusal)
			}
		}
	})
}
