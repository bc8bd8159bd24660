//go:build unix

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// stale reports whether an idle connection has something to read (an
// unsolicited answer, or the backend's close) and must not carry a request.
// It peeks without blocking: one system call, made only for connections
// idle long enough for a backend to have given up on them.
func stale(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var (
		buf      [1]byte
		readable bool
	)
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read is the only good answer: data, EOF (no error,
		// nothing read) or an error such as a reset all rule it out.
		readable = !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EWOULDBLOCK) && !errors.Is(rerr, syscall.EINTR)
		return true // never wait
	})
	return readable || err != nil
}
