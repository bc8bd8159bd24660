package integrity_test

import (
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/guard/integrity"
)

// Sums of "a" and of "" for building manifest lines.
var (
	sumA     = sha256.Sum256([]byte("a"))
	sumEmpty = sha256.Sum256(nil)
)

const (
	hexA     = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
	hexEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []integrity.Entry
	}{
		{
			name: "text mode",
			in:   hexA + "  a.txt\n",
			want: []integrity.Entry{{Path: "a.txt", Sum: sumA, Line: 1}},
		},
		{
			name: "binary marker",
			in:   hexA + " *bin/app\n",
			want: []integrity.Entry{{Path: "bin/app", Sum: sumA, Binary: true, Line: 1}},
		},
		{
			name: "uppercase hex, no final newline",
			in:   strings.ToUpper(hexA) + "  a",
			want: []integrity.Entry{{Path: "a", Sum: sumA, Line: 1}},
		},
		{
			name: "comments and blank lines are skipped, line numbers kept",
			in:   "# release v1\n\n" + hexA + "  a\n   \n\t\n#" + hexEmpty + "  b\n" + hexEmpty + "  e\n",
			want: []integrity.Entry{{Path: "a", Sum: sumA, Line: 3}, {Path: "e", Sum: sumEmpty, Line: 7}},
		},
		{
			name: "CRLF line ends",
			in:   hexA + "  a\r\n" + hexEmpty + " *e\r\n",
			want: []integrity.Entry{{Path: "a", Sum: sumA, Line: 1}, {Path: "e", Sum: sumEmpty, Binary: true, Line: 2}},
		},
		{
			name: "spaces inside and around the path are kept",
			in:   hexA + "   lead and trail \n",
			want: []integrity.Entry{{Path: " lead and trail ", Sum: sumA, Line: 1}},
		},
		{
			name: "GNU escaped names",
			in:   `\` + hexA + `  dir\\with\nnewline\rcr` + "\n",
			want: []integrity.Entry{{Path: "dir\\with\nnewline\rcr", Sum: sumA, Line: 1}},
		},
		{
			name: "backslash without the escape marker is literal",
			in:   hexA + `  dir\n` + "\n",
			want: []integrity.Entry{{Path: `dir\n`, Sum: sumA, Line: 1}},
		},
		{
			name: "BSD tag form",
			in:   "SHA256 (a) = " + hexA + "\nSHA256 (odd) = name) = " + hexEmpty + "\n",
			want: []integrity.Entry{{Path: "a", Sum: sumA, Line: 1}, {Path: "odd) = name", Sum: sumEmpty, Line: 2}},
		},
		{
			name: "escaped BSD tag form",
			in:   `\SHA256 (x\ny) = ` + hexA + "\n",
			want: []integrity.Entry{{Path: "x\ny", Sum: sumA, Line: 1}},
		},
		{
			name: "escaping paths parse (Verify rejects them)",
			in:   hexA + "  ../etc/passwd\n" + hexA + "  /etc/passwd\n",
			want: []integrity.Entry{{Path: "../etc/passwd", Sum: sumA, Line: 1}, {Path: "/etc/passwd", Sum: sumA, Line: 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := integrity.ParseManifest(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("ParseManifest(%q) error: %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseManifest(%q) = %+v; want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseManifestErrors(t *testing.T) {
	long := hexA + "  " + strings.Repeat("x", integrity.MaxLineLength) + "\n"
	tests := []struct {
		name     string
		in       string
		wantErr  error
		wantLine int
	}{
		{"empty", "", integrity.ErrNoEntries, 0},
		{"only comments", "# nothing\n\n", integrity.ErrNoEntries, 0},
		{"short hex", hexA[:63] + "  a\n", integrity.ErrMalformedLine, 1},
		{"long hex", hexA + "0  a\n", integrity.ErrMalformedLine, 1},
		{"non-hex digit", "g" + hexA[1:] + "  a\n", integrity.ErrMalformedLine, 1},
		{"one space, no marker", hexA + " a\n", integrity.ErrMalformedLine, 1},
		{"tab separator", hexA + "\t a\n", integrity.ErrMalformedLine, 1},
		{"empty path", hexA + "  \n", integrity.ErrMalformedLine, 1},
		{"empty path binary", hexA + " *\n", integrity.ErrMalformedLine, 1},
		{"hash only", hexA + "\n", integrity.ErrMalformedLine, 1},
		{"leading space", " " + hexA + "  a\n", integrity.ErrMalformedLine, 1},
		{"NUL in path", hexA + "  a\x00b\n", integrity.ErrMalformedLine, 1},
		{"bad escape", `\` + hexA + `  a\tb` + "\n", integrity.ErrMalformedLine, 1},
		{"trailing backslash escape", `\` + hexA + `  a\` + "\n", integrity.ErrMalformedLine, 1},
		{"other algorithm tag", "MD5 (a) = 0cc175b9c0f1b6a831c399e269772661\n", integrity.ErrMalformedLine, 1},
		{"BSD tag short hex", "SHA256 (a) = " + hexA[:60] + "\n", integrity.ErrMalformedLine, 1},
		{"BSD tag empty path", "SHA256 () = " + hexA + "\n", integrity.ErrMalformedLine, 1},
		{"malformed after good lines", "# c\n" + hexA + "  a\n\nnot a checksum line\n", integrity.ErrMalformedLine, 4},
		{"duplicate path", hexA + "  a\n" + hexEmpty + "  b\n" + hexEmpty + " *a\n", integrity.ErrDuplicatePath, 3},
		{"duplicate after cleaning", hexA + "  dir/a\n" + hexA + "  ./dir//a\n", integrity.ErrDuplicatePath, 2},
		{"line too long", hexA + "  a\n" + long, integrity.ErrMalformedLine, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := integrity.ParseManifest(strings.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseManifest(%.80q) = %v, %v; want error %v", tt.in, got, err, tt.wantErr)
			}
			var pe *integrity.ParseError
			if tt.wantLine == 0 {
				if errors.As(err, &pe) {
					t.Errorf("error %v names line %d; want no line", err, pe.Line)
				}
				return
			}
			if !errors.As(err, &pe) || pe.Line != tt.wantLine {
				t.Errorf("ParseManifest(%.80q) error = %v; want it on line %d", tt.in, err, tt.wantLine)
			}
			if !strings.Contains(err.Error(), "line ") {
				t.Errorf("error %q does not name the line", err)
			}
		})
	}
}

func TestEntryStringRoundTrip(t *testing.T) {
	entries := []integrity.Entry{
		{Path: "plain.txt", Sum: sumA},
		{Path: "bin/app", Sum: sumEmpty, Binary: true},
		{Path: "back\\slash", Sum: sumA},
		{Path: "new\nline\r", Sum: sumA, Binary: true},
		{Path: " spaced ", Sum: sumEmpty},
	}
	var sb strings.Builder
	if err := integrity.WriteManifest(&sb, entries); err != nil {
		t.Fatal(err)
	}
	got, err := integrity.ParseManifest(strings.NewReader(sb.String()))
	if err != nil {
		t.Fatalf("ParseManifest(WriteManifest(...)) error: %v\n%s", err, sb.String())
	}
	for i := range got {
		got[i].Line = 0
	}
	if !slices.Equal(got, entries) {
		t.Errorf("round trip = %+v; want %+v", got, entries)
	}
	if want := hexA + "  plain.txt"; entries[0].String() != want {
		t.Errorf("String() = %q; want %q", entries[0].String(), want)
	}
}
