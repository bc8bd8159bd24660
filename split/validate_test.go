package split_test

import (
	"errors"
	"testing"

	"github.com/canaryd/canaryd/split"
)

// Each value's rule: what CANARY_STICKY_KEY and CANARY_OVERRIDE_HEADER are
// checked against as well; Config.Validate applies them.
func TestValidateValues(t *testing.T) {
	for _, tt := range []struct {
		sticky, override string
		ok               bool
	}{
		{"", "", true},
		{"cookie:sid", "", true},
		{"HEADER:X-User", "", true},
		{"query:x", "", false},
		{"cookie:", "", false},
		{"header:bad name", "", false},
		{"", "X-Canary", true},
		{"", "X Canary", false},
		{"", "X-Canary:", false},
	} {
		err := errors.Join(split.ValidateStickyKey(tt.sticky), split.ValidateOverrideHeader(tt.override))
		if (err == nil) != tt.ok {
			t.Errorf("sticky %q, override %q: %v; want ok = %v", tt.sticky, tt.override, err, tt.ok)
		}
		cerr := split.Config{StickyKey: tt.sticky, OverrideHeader: tt.override}.Validate()
		if (cerr == nil) != tt.ok || (cerr != nil && !errors.Is(cerr, split.ErrBadConfig)) {
			t.Errorf("Validate(sticky %q, override %q) = %v; want ok = %v, else ErrBadConfig", tt.sticky, tt.override, cerr, tt.ok)
		}
	}
}
