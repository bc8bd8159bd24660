package proxy

import (
	"net/url"
	"testing"

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/split"
)

// The fast path serves plain http:// backends unless switched off;
// https:// backends always take the standard path.
func TestFastPathSwitch(t *testing.T) {
	sp, err := split.New(split.Config{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		off          bool
		stable, want string
	}{
		{false, "http://stable.test", "fast"},
		{true, "http://stable.test", "standard"},
		{false, "https://stable.test", "standard"},
	} {
		u, _ := url.Parse(tc.stable)
		p, err := New(Config{Stable: u, Canary: &url.URL{Scheme: "http", Host: "canary.test"}, DisableFastPath: tc.off}, sp, zerolog.Nop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := "standard"
		if bk := p.backends[split.Stable]; bk.pool != nil && bk.target != nil {
			got = "fast"
		}
		if got != tc.want {
			t.Errorf("%s with DisableFastPath %v: %s path; want %s", tc.stable, tc.off, got, tc.want)
		}
	}
}
