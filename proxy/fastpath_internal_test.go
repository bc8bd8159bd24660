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
		{false, "http://127.0.0.1:1", "fast"},
		{true, "http://127.0.0.1:1", "standard"},
		{false, "https://127.0.0.1:1", "standard"},
		{false, "h2c://127.0.0.1:1", "standard"},
	} {
		u, _ := url.Parse(tc.stable)
		p, err := New(Config{Stable: u, Canary: &url.URL{Scheme: "http", Host: "127.0.0.1:2"}, DisableFastPath: tc.off}, sp, zerolog.Nop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := "standard"
		if ep := p.backends[split.Stable].set.Load().all[0]; ep.pool != nil && ep.target != nil {
			got = "fast"
		}
		if got != tc.want {
			t.Errorf("%s with DisableFastPath %v: %s path; want %s", tc.stable, tc.off, got, tc.want)
		}
	}
}
