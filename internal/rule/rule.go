// Package rule holds the shapes the configuration rules of canaryd's
// packages share (positive, at least, between; zero meaning the default),
// so that each package's Validate… functions state their bounds and
// nothing else. Its errors name the value, never a variable or field: the
// caller says which one (a package's Config.Validate its field, canaryd
// the environment variable).
package rule

import (
	"cmp"
	"fmt"
	"time"
)

// Positive refuses a duration that is zero or negative.
func Positive(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%v must be positive", d)
	}
	return nil
}

// AtLeast refuses v below lo.
func AtLeast[T cmp.Ordered](v, lo T) error {
	if v < lo {
		return fmt.Errorf("%v must be at least %v", v, lo)
	}
	return nil
}

// Between refuses v outside lo..hi (both allowed).
func Between[T cmp.Ordered](v, lo, hi T) error {
	if v < lo || v > hi {
		return fmt.Errorf("%v must be between %v and %v", v, lo, hi)
	}
	return nil
}

// IfSet applies check to v unless v is its type's zero value, which a
// Config reads as "the default".
func IfSet[T comparable](v T, check func(T) error) error {
	var zero T
	if v == zero {
		return nil
	}
	return check(v)
}
