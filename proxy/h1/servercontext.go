package h1

import (
	"context"
	"sync"
)

// requestContext is the context of a request the loop serves. It is
// canceled when the handler returns, or before when the client goes
// away, as net/http's request contexts are; but it costs nothing until
// someone asks.
//
// net/http starts a goroutine per request that keeps a read pending on
// the socket, to notice a client's disconnect at once. Most requests
// never need that: the fast path's exchange takes microseconds and checks
// Err when it waits. So the watch starts only when someone waits on the
// context (Done, which context.AfterFunc, a select or a derived context
// call): a cancelCtx is made then, and the connection's watcher goroutine
// started (serverConn.watch), which waits for the socket to turn readable
// without consuming anything and cancels the context when that is the
// client's close. Err, without a watch, looks at the socket once, without
// waiting (a MSG_PEEK). The watch starts only once the request's body is
// read: until then the body's reads see a disconnect themselves, and a
// pending read would compete with them.
type requestContext struct {
	context.Context // the connection's: values, no cancellation
	c               *serverConn

	mu     sync.Mutex
	inner  context.Context // the cancelCtx, once someone waited
	cancel context.CancelFunc
	ended  bool // the request is over or its client gone
}

// Done implements context.Context, starting the watch.
func (x *requestContext) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.inner == nil {
		x.inner, x.cancel = context.WithCancel(x.Context)
		if x.ended {
			x.cancel()
		} else {
			// Under x.mu, so that end cannot come in between and leave a
			// watch running after the request.
			x.c.requestWaitedOn(x)
		}
	}
	return x.inner.Done()
}

// Err implements context.Context.
func (x *requestContext) Err() error {
	x.mu.Lock()
	inner, ended := x.inner, x.ended
	x.mu.Unlock()
	switch {
	case inner != nil:
		return inner.Err()
	case ended:
		return context.Canceled
	case x.c.clientGone():
		x.clientGone()
		return context.Canceled
	}
	return nil
}

// Value implements context.Context. Once someone waited, values come
// through the cancelCtx, so that contexts derived from this one and
// context.AfterFunc find it and register with it instead of starting a
// goroutine each.
func (x *requestContext) Value(key any) any {
	x.mu.Lock()
	inner := x.inner
	x.mu.Unlock()
	if inner != nil {
		return inner.Value(key)
	}
	return x.Context.Value(key)
}

// clientGone cancels the context: the client closed the connection, or
// writing to it failed.
func (x *requestContext) clientGone() {
	x.mu.Lock()
	if x.inner == nil {
		x.inner, x.cancel = context.WithCancel(x.Context)
	}
	x.ended = true
	cancel := x.cancel
	x.mu.Unlock()
	cancel()
}

// end cancels the context after the handler returned.
func (x *requestContext) end() {
	x.mu.Lock()
	x.ended = true
	cancel := x.cancel
	x.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// reusable reports whether nobody waited on the context, so that no
// goroutine can hold it: the connection may reuse it.
func (x *requestContext) reusable() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.inner == nil
}
