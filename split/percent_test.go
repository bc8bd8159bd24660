package split_test

import (
	"errors"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/split"
)

func TestParsePercent(t *testing.T) {
	tests := []struct {
		in      string
		want    uint32
		wantErr error
	}{
		{"0", 0, nil},
		{"0.0", 0, nil},
		{"00", 0, nil},
		{"5", 500, nil},
		{"007", 700, nil},
		{"10", 1000, nil},
		{"25", 2500, nil},
		{"100", 10000, nil},
		{"100.00", 10000, nil},
		{"0100", 10000, nil},
		{"2.5", 250, nil},
		{"12.34", 1234, nil},
		{"12.340000", 1234, nil},
		{"0.01", 1, nil},
		{"0.29", 29, nil}, // 0.29*100 is 28.999… in floating point
		{"33.33", 3333, nil},
		{"99.99", 9999, nil},
		{"0.001", 0, split.ErrPercentPrecision},
		{"12.345", 0, split.ErrPercentPrecision},
		{"0." + strings.Repeat("0", 50) + "1", 0, split.ErrPercentPrecision},
		{"100.01", 0, split.ErrPercentRange},
		{"101", 0, split.ErrPercentRange},
		{"1000", 0, split.ErrPercentRange},
		{"4294967296", 0, split.ErrPercentRange},
		{"123456789012345678901234567890", 0, split.ErrPercentRange},
		{"1000.001", 0, split.ErrPercentPrecision},
		{"", 0, split.ErrPercentSyntax},
		{".", 0, split.ErrPercentSyntax},
		{".5", 0, split.ErrPercentSyntax},
		{"5.", 0, split.ErrPercentSyntax},
		{"-0", 0, split.ErrPercentSyntax},
		{"-1", 0, split.ErrPercentSyntax},
		{"+5", 0, split.ErrPercentSyntax},
		{"1e1", 0, split.ErrPercentSyntax},
		{"2.5e1", 0, split.ErrPercentSyntax},
		{"1E2", 0, split.ErrPercentSyntax},
		{"5%", 0, split.ErrPercentSyntax},
		{"NaN", 0, split.ErrPercentSyntax},
		{"Inf", 0, split.ErrPercentSyntax},
		{"0x10", 0, split.ErrPercentSyntax},
		{" 5", 0, split.ErrPercentSyntax},
		{"5 ", 0, split.ErrPercentSyntax},
		{"1_0", 0, split.ErrPercentSyntax},
		{"1.2.3", 0, split.ErrPercentSyntax},
		{"١٠", 0, split.ErrPercentSyntax}, // Arabic-Indic digits
		{"ten", 0, split.ErrPercentSyntax},
	}
	for _, tt := range tests {
		got, err := split.ParsePercent(tt.in)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("ParsePercent(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && (!strings.Contains(err.Error(), "\"") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("ParsePercent(%q) error %q: want one line quoting the text", tt.in, err)
		}
	}
}

func TestFormatPercent(t *testing.T) {
	for w, want := range map[uint32]string{0: "0", 1: "0.01", 10: "0.1", 29: "0.29", 250: "2.5", 1234: "12.34", 1250: "12.5", 10000: "100"} {
		if got := split.FormatPercent(w); got != want {
			t.Errorf("FormatPercent(%d) = %q; want %q", w, got, want)
		}
	}
	for w := uint32(0); w <= split.MaxWeight; w++ {
		if back, err := split.ParsePercent(split.FormatPercent(w)); err != nil || back != w {
			t.Fatalf("ParsePercent(FormatPercent(%d)) = %d, %v", w, back, err)
		}
	}
}

// plainDecimal is the grammar of the package doc, written as a regular
// expression (the oracle's, independent of the parser's hand-written scan).
var plainDecimal = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// FuzzParsePercent holds the parser against the standard library's exact
// decimal arithmetic (math/big.Rat): a text is accepted exactly when it is
// in the grammar and big.Rat reads it as a whole number of hundredths from 0
// to 100, and then the result is that number. Seeds live in
// testdata/fuzz/FuzzParsePercent.
func FuzzParsePercent(f *testing.F) {
	for _, s := range []string{"12.5", "0.01", "100", "100.01", "1e1", "-0", "0.29", "12.340000", ".5"} {
		f.Add(s)
	}
	hundred := big.NewRat(100, 1)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := split.ParsePercent(s)
		inGrammar := plainDecimal.MatchString(s)
		want, wantOK := uint32(0), false
		if inGrammar {
			r, ok := new(big.Rat).SetString(s)
			if !ok {
				t.Fatalf("big.Rat cannot read %q, which matches the grammar", s)
			}
			h := new(big.Rat).Mul(r, hundred)
			if h.IsInt() && h.Cmp(big.NewRat(split.MaxWeight, 1)) <= 0 {
				want, wantOK = uint32(h.Num().Uint64()), true
			}
		}
		switch {
		case wantOK && (err != nil || got != want):
			t.Fatalf("ParsePercent(%q) = %d, %v; big.Rat says %d", s, got, err, want)
		case !wantOK && err == nil:
			t.Fatalf("ParsePercent(%q) = %d, accepted; want an error (in grammar: %v)", s, got, inGrammar)
		case !wantOK && got != 0:
			t.Fatalf("ParsePercent(%q) = %d with an error; want 0", s, got)
		case !inGrammar && err != nil && !errors.Is(err, split.ErrPercentSyntax):
			t.Fatalf("ParsePercent(%q) error %v; want ErrPercentSyntax for text outside the grammar", s, err)
		}
	})
}
