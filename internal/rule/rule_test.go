package rule_test

import (
	"errors"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/rule"
)

func TestRules(t *testing.T) {
	refuseOdd := func(n int) error {
		if n%2 != 0 {
			return errors.New("odd")
		}
		return nil
	}
	for _, tt := range []struct {
		name string
		err  error
		want string // "" = nil
	}{
		{"positive", rule.Positive(time.Nanosecond), ""},
		{"zero is not positive", rule.Positive(0), "0s must be positive"},
		{"at least, at the bound", rule.AtLeast(time.Second, time.Second), ""},
		{"below the bound", rule.AtLeast(999*time.Millisecond, time.Second), "999ms must be at least 1s"},
		{"between, low bound", rule.Between(1024, 1024, 2048), ""},
		{"between, high bound", rule.Between(2048, 1024, 2048), ""},
		{"above", rule.Between(2049, 1024, 2048), "2049 must be between 1024 and 2048"},
		{"zero is the default", rule.IfSet(0, refuseOdd), ""},
		{"set is checked", rule.IfSet(3, refuseOdd), "odd"},
	} {
		got := ""
		if tt.err != nil {
			got = tt.err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: %q; want %q", tt.name, got, tt.want)
		}
	}
}
