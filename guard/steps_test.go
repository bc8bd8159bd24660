package guard_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard"
)

func TestParseSteps(t *testing.T) {
	tests := []struct {
		in      string
		want    []guard.Step
		wantErr string // substring of the error; "" = no error
	}{
		{"", nil, ""},
		{"   ", nil, ""},
		{"5@15m,25@30m,100@1h", []guard.Step{{500, 15 * time.Minute}, {2500, 30 * time.Minute}, {10000, time.Hour}}, ""},
		{" 0.5@1s , 12.25@2m30s ", []guard.Step{{50, time.Second}, {1225, 150 * time.Second}}, ""},
		{"100@1ms", []guard.Step{{10000, time.Millisecond}}, ""},
		{"0.01@1s", []guard.Step{{1, time.Second}}, ""},
		{"5@15m,,25@30m", nil, "step 2 of plan"},
		{"5@15m,", nil, "step 2 of plan"},
		{"5", nil, `step "5" is not weight@observe`},
		{"0@1m", []guard.Step{{0, time.Minute}}, ""},
		{"0@10m,5@15m", []guard.Step{{0, 10 * time.Minute}, {500, 15 * time.Minute}}, ""},
		{"5@1m,0@1m", nil, `step "0@1m": weight must rise above the previous step's 5%`},
		{"0@1m,0@2m", nil, "must rise"},
		{"100.01@1m", nil, "above 100"},
		{"150@1m", nil, "above 100"},
		{"-5@1m", nil, "is not a percentage"},
		{"1e1@1m", nil, "is not a percentage"}, // one grammar with CANARY_WEIGHT and the API
		{"NaN@1m", nil, "is not a percentage"},
		{"5.555@1m", nil, "more than two decimals"},
		{"@1m", nil, "is not a percentage"},
		{"5@", nil, "not a duration"},
		{"5@fortnight", nil, "not a duration"},
		{"5@0s", nil, "must be positive"},
		{"5@-1m", nil, "must be positive"},
		{"25@1m,25@1m", nil, `step "25@1m": weight must rise above the previous step's 25%`},
		{"50@1m,25@1m", nil, "must rise"},
		{"5@1m@2m", nil, "not a duration"},
	}
	for _, tt := range tests {
		got, err := guard.ParseSteps(tt.in)
		if tt.wantErr == "" {
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseSteps(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseSteps(%q) error = %v; want one containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestFormatStepsRoundTrip(t *testing.T) {
	for _, in := range []string{"5@15m,25@30m,100@1h", "0.01@1ns,99.99@2h3m4s"} {
		steps, err := guard.ParseSteps(in)
		if err != nil {
			t.Fatal(err)
		}
		again, err := guard.ParseSteps(guard.FormatSteps(steps))
		if err != nil || !reflect.DeepEqual(again, steps) {
			t.Errorf("ParseSteps(FormatSteps(%v)) = %v, %v", steps, again, err)
		}
	}
}

// FuzzParseSteps: never panics; an accepted plan satisfies the invariants
// and survives a FormatSteps round trip.
func FuzzParseSteps(f *testing.F) {
	for _, s := range []string{"5@15m,25@30m,100@1h", "0.5@1s", "", "5@15m,,25@30m", "50@1m,25@1m", "5.555@1m", "1e1@1m", "0@10m,5@15m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		steps, err := guard.ParseSteps(s)
		if err != nil {
			if steps != nil {
				t.Errorf("ParseSteps(%q) returned steps with an error", s)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseSteps(%q) error spans lines: %q", s, err)
			}
			return
		}
		if strings.TrimSpace(s) != "" && len(steps) == 0 {
			t.Errorf("ParseSteps(%q) accepted a non-empty plan with no steps", s)
		}
		for i, st := range steps {
			if (st.Weight == 0 && i > 0) || st.Weight > 10000 || st.Observe <= 0 {
				t.Errorf("ParseSteps(%q)[%d] = %+v out of range", s, i, st)
			}
			if i > 0 && st.Weight <= steps[i-1].Weight {
				t.Errorf("ParseSteps(%q) weights do not rise at %d", s, i)
			}
		}
		again, err := guard.ParseSteps(guard.FormatSteps(steps))
		if err != nil || !reflect.DeepEqual(again, steps) {
			t.Errorf("round trip of %q: %v, %v", s, again, err)
		}
	})
}
