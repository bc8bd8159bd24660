package integrity_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/guard/integrity"
)

// FuzzParseManifest checks that ParseManifest never panics, that what it
// accepts obeys its documented rules, and that a parsed manifest written
// back with WriteManifest parses to the same entries.
//
// The committed corpus in testdata/fuzz/FuzzParseManifest holds one file per
// case below (see testdata/fuzz/README.md); run the fuzzer with
//
//	go test -run '^$' -fuzz FuzzParseManifest -fuzztime 30s ./guard/integrity/
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		hexA + "  a.txt\n",                   // text mode
		hexA + " *bin/app\n",                 // binary marker
		"# comment\n\n  \n" + hexA + "  a\n", // skipped lines
		hexA + "  a\r\n" + hexEmpty + "  b",  // CRLF, no final newline
		`\` + hexA + `  x\\y\nz\r` + "\n",    // GNU escaped name
		"SHA256 (p) = ) = " + hexA + "\n",    // BSD tag with a tricky path
		hexA + "  ../../etc/passwd\n",        // escaping path (parses)
		hexA + "  a\n" + hexA + " *./a\n",    // duplicate
		hexA + " a\n",                        // missing marker
		`\` + hexA + `  bad\q` + "\n",        // bad escape
		strings.ToUpper(hexA) + "  UPPER\n",  // uppercase hex
		"",                                   // empty
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := integrity.ParseManifest(strings.NewReader(in))
		if err != nil {
			if entries != nil {
				t.Fatalf("ParseManifest(%q) = %v, %v; want no entries with an error", in, entries, err)
			}
			return
		}
		if len(entries) == 0 {
			t.Fatalf("ParseManifest(%q) = no entries and no error", in)
		}
		for _, e := range entries {
			if e.Path == "" || strings.IndexByte(e.Path, 0) >= 0 || e.Line < 1 {
				t.Fatalf("ParseManifest(%q) gave invalid entry %+v", in, e)
			}
		}
		var buf bytes.Buffer
		if err := integrity.WriteManifest(&buf, entries); err != nil {
			t.Fatal(err)
		}
		again, err := integrity.ParseManifest(&buf)
		if err != nil {
			t.Fatalf("re-parse of %q failed: %v", buf.String(), err)
		}
		strip := func(es []integrity.Entry) []integrity.Entry {
			out := slices.Clone(es)
			for i := range out {
				out[i].Line = 0
			}
			return out
		}
		if !slices.Equal(strip(entries), strip(again)) {
			t.Fatalf("round trip of %q: %+v; want %+v", in, again, entries)
		}
	})
}
