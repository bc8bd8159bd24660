package split

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The one grammar of a percentage, wherever canaryd reads one
// (CANARY_WEIGHT, the weights of CANARY_STEPS, {"weight": N} of the admin
// API):
//
//	percent = digit+ [ "." digit+ ]
//
// that is plain decimal notation, a value from 0 to 100 that is a whole
// number of hundredths ("12.5", "12.50", "0.01", "100"; further decimals
// are allowed only as zeros, "12.500"). There is no sign, exponent, space,
// underscore, hex, NaN or infinity: every JSON encoder writes a weight in
// this form (they switch to exponents only below 1e-6 or above 1e21), and a
// human never needs more. Parsing is exact, without floating point, so
// "0.29" is 29 hundredths, not 28.999….

// Errors of ParsePercent; each is wrapped with the offending text.
var (
	// ErrPercentSyntax: the text is not in the grammar above.
	ErrPercentSyntax = errors.New("is not a percentage such as 12.5 (digits, optionally a point and decimals; no sign or exponent)")
	// ErrPercentRange: the number lies above 100.
	ErrPercentRange = errors.New("is above 100")
	// ErrPercentPrecision: the number is not a whole number of hundredths.
	ErrPercentPrecision = errors.New("has more than two decimals (the weight moves in steps of 0.01%)")
)

// ParsePercent converts a percentage in the grammar above into hundredths of
// a percent, 0..MaxWeight. Errors wrap ErrPercentSyntax, ErrPercentRange or
// ErrPercentPrecision and quote the text, e.g. `"1e1" is not a percentage
// such as 12.5 (…)`.
func ParsePercent(s string) (uint32, error) {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if !allDigits(intPart) || (hasDot && !allDigits(frac)) {
		return 0, fmt.Errorf("%.40q %w", s, ErrPercentSyntax)
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > 2 {
		return 0, fmt.Errorf("%.40q %w", s, ErrPercentPrecision)
	}
	intPart = strings.TrimLeft(intPart, "0")
	if len(intPart) > 3 {
		return 0, fmt.Errorf("%.40q %w", s, ErrPercentRange)
	}
	// At most 3 + 2 digits: the value fits easily.
	v, _ := strconv.ParseUint("0"+intPart+frac+strings.Repeat("0", 2-len(frac)), 10, 32)
	if v > MaxWeight {
		return 0, fmt.Errorf("%.40q %w", s, ErrPercentRange)
	}
	return uint32(v), nil
}

// FormatPercent writes hundredths of a percent in the shortest form
// ParsePercent reads back: 1250 is "12.5", 1 is "0.01", 10000 is "100".
func FormatPercent(w uint32) string {
	s := strconv.FormatUint(uint64(w/100), 10)
	if f := w % 100; f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%02d", f), "0")
	}
	return s
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
