//go:build unix

package h1

import (
	"errors"
	"syscall"
)

// unread reports whether the connection has something to read in the
// kernel: bytes nobody asked for, or the backend's close. One non-blocking
// MSG_PEEK receive, without the runtime's poller: nothing is consumed and
// nothing waits.
func (c *conn) unread() bool {
	if c.rc == nil {
		return true // cannot tell: not reusable
	}
	if err := c.rc.Control(c.peekFn); err != nil {
		return true
	}
	return c.readable
}

// peek is RawConn.Control's function for unread (bound once per
// connection, so the check allocates nothing).
func (c *conn) peek(fd uintptr) {
	// Nothing to read is the only clean answer: data, end of stream (no
	// error, nothing read) or an error such as a reset all rule reuse out.
	c.readable = peekWaiting(fd, c.peekBuf[:])
}

// canPeek says that the socket can be looked into without consuming.
const canPeek = true

// peekWaiting reports whether anything waits in the socket fd: bytes, the
// peer's close or an error (one non-blocking MSG_PEEK into buf).
func peekWaiting(fd uintptr, buf []byte) bool {
	_, err := peekSocket(fd, buf)
	return !nothingYet(err)
}

// nothingYet reports whether a non-blocking receive failed for want of
// anything to read.
func nothingYet(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)
}

// peekSocket is one non-blocking MSG_PEEK of fd into buf: n bytes waiting,
// 0 and no error for the peer's close, EAGAIN for nothing yet.
func peekSocket(fd uintptr, buf []byte) (int, error) {
	n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}

// peekGone looks at a client connection's socket without consuming or
// waiting: ready is false when there is nothing to read (the client is
// there, quiet); otherwise gone says whether what there is to read is the
// client's close or a reset (not a byte).
func (c *serverConn) peekGone(fd uintptr) (ready, gone bool) {
	n, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR) {
		return false, false
	}
	return true, err != nil || n == 0
}
