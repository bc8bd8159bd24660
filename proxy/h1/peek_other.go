//go:build !unix

package h1

// unread cannot look into the socket here without consuming: no
// connection is reused, each exchange dials anew (correct, not fast; the
// fast path is made for Linux).
func (c *conn) unread() bool { return true }

func (c *conn) peek(uintptr) {}

// canPeek says that the socket cannot be looked into here: the standard
// path's guard only refuses what it reads while idle (answerguard.go).
const canPeek = false

func peekWaiting(uintptr, []byte) bool { return false }

func peekSocket(uintptr, []byte) (int, error) { return 0, nil }

func nothingYet(error) bool { return false }

// peekGone cannot look into the socket here: a client's disconnect is
// noticed when writing to it.
func (c *serverConn) peekGone(uintptr) (ready, gone bool) { return true, false }
