package proxy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

func TestConfigValidate(t *testing.T) {
	good := func() proxy.Config {
		return proxy.Config{Stable: mustURL(t, "http://stable:8080"), Canary: mustURL(t, "https://canary:8443/v2")}
	}
	tests := []struct {
		name    string
		mod     func(*proxy.Config)
		wantErr string // "" = valid
	}{
		{"valid", func(*proxy.Config) {}, ""},
		{"valid with health", func(c *proxy.Config) { c.HealthPath = "/healthz" }, ""},
		{"no stable", func(c *proxy.Config) { c.Stable = nil }, "stable backend URL is required"},
		{"no canary", func(c *proxy.Config) { c.Canary = nil }, "canary backend URL is required"},
		{"ftp scheme", func(c *proxy.Config) { c.Canary = mustURL(t, "ftp://canary") }, "must start with http://, https:// or h2c://"},
		{"no host", func(c *proxy.Config) { c.Stable = mustURL(t, "http:///path") }, "has no host"},
		{"same backends", func(c *proxy.Config) { c.Canary = c.Stable }, "must differ"},
		{"negative window", func(c *proxy.Config) { c.Window = -time.Second }, "window"},
		{"negative timeout", func(c *proxy.Config) { c.ResponseHeaderTimeout = -1 }, "response header timeout"},
		{"relative health path", func(c *proxy.Config) { c.HealthPath = "healthz" }, "must start with /"},
		{"password not echoed", func(c *proxy.Config) { c.Stable = mustURL(t, "gopher://u:hunter2@h") }, "xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.mod(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, proxy.ErrBadConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v; want an ErrBadConfig mentioning %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("Validate() = %v; leaks the URL's password", err)
			}
			if _, err := proxy.New(c, &split.Splitter{}, zerolog.Nop(), nil); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}
