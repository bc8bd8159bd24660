//go:build !unix

package h1

// unread cannot look into the socket here without consuming: no
// connection is reused, each exchange dials anew (correct, not fast; the
// fast path is made for Linux).
func (c *conn) unread() bool { return true }

func (c *conn) peek(uintptr) {}
