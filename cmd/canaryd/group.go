package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// group runs Run-style functions (func(ctx) error, ending when ctx ends)
// under one context. The first to fail, or to return while the group still
// runs, cancels the others; Wait returns every failure. It is
// golang.org/x/sync/errgroup's WithContext, plus names in the errors and
// the rule that a part stopping on its own is a failure.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex // protects errs
	errs []error
}

// newGroup returns a group whose context ends with parent's, on Stop, or on
// the first failure.
func newGroup(parent context.Context) *group {
	ctx, cancel := context.WithCancel(parent)
	return &group{ctx: ctx, cancel: cancel}
}

// Go runs fn(ctx) in a goroutine, naming it in its error.
func (g *group) Go(name string, fn func(context.Context) error) {
	g.wg.Go(func() {
		err := fn(g.ctx)
		if err == nil && g.ctx.Err() == nil {
			err = errors.New("stopped unexpectedly")
		}
		if err == nil || (g.ctx.Err() != nil && errors.Is(err, context.Canceled)) {
			return
		}
		g.mu.Lock()
		g.errs = append(g.errs, fmt.Errorf("%s: %w", name, err))
		g.mu.Unlock()
		g.cancel()
	})
}

// Done is closed when the group's context ends: its parent ended, Stop was
// called, or a function failed.
func (g *group) Done() <-chan struct{} { return g.ctx.Done() }

// Err returns the failures so far, joined (nil when none).
func (g *group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return errors.Join(g.errs...)
}

// Stop ends the group's context: every function is asked to return.
func (g *group) Stop() { g.cancel() }

// Wait waits for every function to return and returns their failures.
func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.Err()
}
