package judge_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard/judge"
)

// Each SLO value's rule, at its boundaries: what canaryd's environment is
// checked against as well.
func TestValidateSLOValues(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"error rate 0.01", judge.ValidateErrorRate(0.01), true},
		{"error rate 0", judge.ValidateErrorRate(0), false},
		{"error rate 1", judge.ValidateErrorRate(1), false},
		{"error rate NaN", judge.ValidateErrorRate(math.NaN()), false},
		{"p95 1ns", judge.ValidateP95(1), true},
		{"p95 0", judge.ValidateP95(0), false},
		{"p95 negative", judge.ValidateP95(-time.Second), false},
		{"min requests 1", judge.ValidateMinRequests(1), true},
		{"min requests 0", judge.ValidateMinRequests(0), false},
		{"alpha 0.01", judge.ValidateAlpha(0.01), true},
		{"alpha just under 0.5", judge.ValidateAlpha(math.Nextafter(0.5, 0)), true},
		{"alpha 0.5", judge.ValidateAlpha(0.5), false},
		{"alpha 0", judge.ValidateAlpha(0), false},
		{"alpha NaN", judge.ValidateAlpha(math.NaN()), false},
		{"margin 0.5", judge.ValidateMargin(0.5), true},
		{"margin 10", judge.ValidateMargin(10), true},
		{"margin 0", judge.ValidateMargin(0), false},
		{"margin negative", judge.ValidateMargin(-0.5), false},
		{"margin infinite", judge.ValidateMargin(math.Inf(1)), false},
		{"margin NaN", judge.ValidateMargin(math.NaN()), false},
	} {
		if (tt.err == nil) != tt.ok {
			t.Errorf("%s: %v; want ok = %v", tt.name, tt.err, tt.ok)
		}
	}
	// SLO.Validate applies them; a zero Alpha or Margin is the default, a
	// zero MinRequests is not.
	slo := judge.SLO{ErrorRate: 0.01, P95: time.Second, MinRequests: 1}
	if err := slo.Validate(); err != nil {
		t.Errorf("%+v: %v", slo, err)
	}
	slo.MinRequests = 0
	if err := slo.Validate(); !errors.Is(err, judge.ErrInvalidSLO) {
		t.Errorf("MinRequests 0: %v; want ErrInvalidSLO", err)
	}
}
