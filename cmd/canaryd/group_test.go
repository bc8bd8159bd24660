package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A failing function cancels the others and Wait names it; functions that
// end with the context are not failures.
func TestGroupFirstFailureStopsTheOthers(t *testing.T) {
	g := newGroup(context.Background())
	boom := errors.New("boom")
	g.Go("waiter", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	g.Go("failer", func(context.Context) error { return boom })
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the group did not end after a failure")
	}
	err := g.Wait()
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "failer: boom") || strings.Contains(err.Error(), "waiter") {
		t.Errorf("Wait() = %v; want only failer: boom", err)
	}
}

// A function that returns nil while the group runs stopped on its own: that
// is a failure too.
func TestGroupUnexpectedStop(t *testing.T) {
	g := newGroup(context.Background())
	g.Go("quitter", func(context.Context) error { return nil })
	if err := g.Wait(); err == nil || !strings.Contains(err.Error(), "quitter: stopped unexpectedly") {
		t.Errorf("Wait() = %v; want quitter: stopped unexpectedly", err)
	}
}

// Stop and the parent's end ask every function to return; nil and
// context.Canceled are then clean.
func TestGroupStop(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	g := newGroup(parent)
	g.Go("a", func(ctx context.Context) error { <-ctx.Done(); return nil })
	g.Go("b", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	cancel()
	if err := g.Wait(); err != nil {
		t.Errorf("Wait() after the parent ended = %v; want nil", err)
	}
	g = newGroup(context.Background())
	g.Go("c", func(ctx context.Context) error { <-ctx.Done(); return nil })
	g.Stop()
	if err := g.Wait(); err != nil {
		t.Errorf("Wait() after Stop = %v; want nil", err)
	}
}
