package proxy_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

// Each value's rule, at its boundaries: what canaryd's environment is
// checked against as well.
func TestValidateValues(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"window 1s", proxy.ValidateWindow(time.Second), true},
		{"window under 1s", proxy.ValidateWindow(time.Second - 1), false},
		{"window 0", proxy.ValidateWindow(0), false},
		{"response header timeout 1ns", proxy.ValidateResponseHeaderTimeout(1), true},
		{"response header timeout 0", proxy.ValidateResponseHeaderTimeout(0), false},
		{"response header timeout negative", proxy.ValidateResponseHeaderTimeout(-time.Second), false},
		{"max conns 1", proxy.ValidateMaxConnsPerBackend(1), true},
		{"max conns 0", proxy.ValidateMaxConnsPerBackend(0), false},
		{"max conns negative", proxy.ValidateMaxConnsPerBackend(-1), false},
		{"response header bytes 4096", proxy.ValidateMaxResponseHeaderBytes(4096), true},
		{"response header bytes 4095", proxy.ValidateMaxResponseHeaderBytes(4095), false},
		{"response header bytes 16 MiB", proxy.ValidateMaxResponseHeaderBytes(16 << 20), true},
		{"response header bytes over 16 MiB", proxy.ValidateMaxResponseHeaderBytes(16<<20 + 1), false},
		{"request buffer 1024", proxy.ValidateRequestBuffer(1024), true},
		{"request buffer 1023", proxy.ValidateRequestBuffer(1023), false},
		{"request buffer 64 MiB", proxy.ValidateRequestBuffer(64 << 20), true},
		{"request buffer over 64 MiB", proxy.ValidateRequestBuffer(64<<20 + 1), false},
		{"body read timeout 1ns", proxy.ValidateBodyReadTimeout(1), true},
		{"body read timeout 0", proxy.ValidateBodyReadTimeout(0), false},
		{"health path empty (off)", proxy.ValidateHealthPath(""), true},
		{"health path /healthz", proxy.ValidateHealthPath("/healthz"), true},
		{"health path relative", proxy.ValidateHealthPath("healthz"), false},
		{"health interval 1ns", proxy.ValidateHealthInterval(1), true},
		{"health interval 0", proxy.ValidateHealthInterval(0), false},
		{"DNS refresh 1s", proxy.ValidateDNSRefresh(time.Second), true},
		{"DNS refresh under 1s", proxy.ValidateDNSRefresh(999 * time.Millisecond), false},
		{"eject time 1ns", proxy.ValidateEjectTime(1), true},
		{"eject time MaxEjectTime", proxy.ValidateEjectTime(proxy.MaxEjectTime), true},
		{"eject time over MaxEjectTime", proxy.ValidateEjectTime(proxy.MaxEjectTime + 1), false},
		{"eject time 0", proxy.ValidateEjectTime(0), false},
	} {
		if (tt.err == nil) != tt.ok {
			t.Errorf("%s: %v; want ok = %v", tt.name, tt.err, tt.ok)
		}
	}
}

func TestValidateBackend(t *testing.T) {
	urls := func(raw ...string) []*url.URL {
		var out []*url.URL
		for _, r := range raw {
			out = append(out, mustURL(t, r))
		}
		return out
	}
	for _, tt := range []struct {
		urls    []*url.URL
		wantErr string // "" = valid
	}{
		{urls("http://a:1"), ""},
		{urls("h2c://a:1", "h2c://b:1"), ""},
		{urls("https://a/api", "https://a/api2"), ""},
		{nil, "required"},
		{[]*url.URL{nil}, "nil URL"},
		{urls("ftp://a"), "must start with http://, https:// or h2c://"},
		{urls("http:///x"), "has no host"},
		{urls("http://a/?q=1"), "query, fragment or credentials"},
		{urls("http://a/#f"), "query, fragment or credentials"},
		{urls("http://u:hunter2@a"), "query, fragment or credentials"},
		{urls("http://a:1", "https://b:1"), "mixes http:// and https://"},
		{urls("http://a", "http://A:80/"), "twice"},
		{urls("https://a/api/", "https://a:443/api"), "twice"},
	} {
		err := proxy.ValidateBackend(tt.urls)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ValidateBackend(%v) = %v; want %q", tt.urls, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ValidateBackend(%v) = %v; leaks the password", tt.urls, err)
		}
	}
	same := proxy.ValidateBackendsDiffer([]*url.URL{mustURL(t, "http://h:9301")}, []*url.URL{mustURL(t, "http://b:1"), mustURL(t, "HTTP://H:9301/")})
	if same == nil || !strings.Contains(same.Error(), "same backend") {
		t.Errorf("ValidateBackendsDiffer of a shared URL = %v; want the same backend named", same)
	}
	if err := proxy.ValidateBackendsDiffer([]*url.URL{mustURL(t, "http://h:9301")}, []*url.URL{mustURL(t, "http://h:9302")}); err != nil {
		t.Errorf("ValidateBackendsDiffer of distinct URLs = %v", err)
	}
}

// Config.Validate applies each value's rule to a field that is set; zero
// means the default and passes.
func TestConfigValidateValues(t *testing.T) {
	good := func() proxy.Config {
		return proxy.Config{Stable: mustURL(t, "http://stable:8080"), Canary: mustURL(t, "http://canary:8080")}
	}
	for _, tt := range []struct {
		name    string
		mod     func(*proxy.Config)
		wantErr string // "" = valid
	}{
		{"zero values are the defaults", func(*proxy.Config) {}, ""},
		{"window under 1s", func(c *proxy.Config) { c.Window = 500 * time.Millisecond }, "window"},
		{"max conns negative", func(c *proxy.Config) { c.MaxConnsPerBackend = -1 }, "max connections per backend"},
		{"response header cap too small", func(c *proxy.Config) { c.MaxResponseHeaderBytes = 1024 }, "max response header bytes"},
		{"request buffer too small", func(c *proxy.Config) { c.RequestBuffer = 100 }, "request buffer"},
		{"request buffer smallest", func(c *proxy.Config) { c.RequestBuffer = 1024 }, ""},
		{"body read timeout negative", func(c *proxy.Config) { c.BodyReadTimeout = -time.Second }, "body read timeout"},
		{"health interval negative", func(c *proxy.Config) { c.HealthInterval = -time.Second }, "health interval"},
		{"DNS refresh under 1s", func(c *proxy.Config) { c.DNSRefresh = 100 * time.Millisecond }, "DNS refresh"},
		{"eject time over the cap", func(c *proxy.Config) { c.EjectTime = time.Hour }, "eject time"},
		{"pool with a query", func(c *proxy.Config) {
			c.Canary, c.CanaryURLs = nil, []*url.URL{mustURL(t, "http://c:1"), mustURL(t, "http://c:2/?x=1")}
		}, "query"},
		{"pool sharing stable's URL", func(c *proxy.Config) {
			c.Canary, c.CanaryURLs = nil, []*url.URL{mustURL(t, "http://c:1"), mustURL(t, "http://STABLE:8080/")}
		}, "must differ"},
		{"one URL and a pool", func(c *proxy.Config) { c.CanaryURLs = []*url.URL{mustURL(t, "http://c:1")} }, "not both"},
		{"negative slow threshold", func(c *proxy.Config) { c.SlowThreshold = -1 }, "slow threshold"},
		{"unknown load balancer", func(c *proxy.Config) { c.LoadBalancer = 9 }, "load balancer"},
	} {
		c := good()
		tt.mod(&c)
		err := c.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (!errors.Is(err, proxy.ErrBadConfig) || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate() = %v; want %q", tt.name, err, tt.wantErr)
		}
	}
}
