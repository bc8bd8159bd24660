package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/split"
)

// The cohort, sticky-cookie and mirror variables: a bad value exits 2 with
// one line naming the variable.
func TestCohortConfigErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"match bad regex", []string{"CANARY_MATCH=header:User-Agent~(unclosed"}, "CANARY_MATCH"},
		{"match unknown kind", []string{"CANARY_MATCH=query:beta=1"}, "CANARY_MATCH"},
		{"match bad cidr", []string{"CANARY_MATCH=cidr:10.0.0.0/40"}, "CANARY_MATCH"},
		{"match cidr a name", []string{"CANARY_MATCH=cidr:office.example.com"}, "CANARY_MATCH"},
		{"match header without value", []string{"CANARY_MATCH=header:X-Beta"}, "CANARY_MATCH"},
		{"match path without slash", []string{"CANARY_MATCH=path:beta"}, "CANARY_MATCH"},
		{"match cookie without value", []string{"CANARY_MATCH=cookie:beta"}, "CANARY_MATCH"},
		{"trusted proxies bad entry", []string{"CANARY_TRUSTED_PROXIES=127.0.0.1,lb.internal"}, "CANARY_TRUSTED_PROXIES"},
		{"trusted proxies bad prefix", []string{"CANARY_TRUSTED_PROXIES=10.0.0.0/33"}, "CANARY_TRUSTED_PROXIES"},
		{"trusted proxies empty item", []string{"CANARY_TRUSTED_PROXIES=10.0.0.0/8,"}, "CANARY_TRUSTED_PROXIES"},
		{"set cookie without a sticky key", []string{"CANARY_STICKY_SET_COOKIE=true"}, "CANARY_STICKY_SET_COOKIE"},
		{"set cookie with a header key", []string{"CANARY_STICKY_SET_COOKIE=true", "CANARY_STICKY_KEY=header:X-User"}, "CANARY_STICKY_SET_COOKIE"},
		{"set cookie not a boolean", []string{"CANARY_STICKY_SET_COOKIE=yes"}, "CANARY_STICKY_SET_COOKIE"},
		{"max age too short", []string{"CANARY_STICKY_MAX_AGE=500ms"}, "CANARY_STICKY_MAX_AGE"},
		{"max age fractional", []string{"CANARY_STICKY_MAX_AGE=1.5s"}, "CANARY_STICKY_MAX_AGE"},
		{"max age not a duration", []string{"CANARY_STICKY_MAX_AGE=1d"}, "CANARY_STICKY_MAX_AGE"},
		{"max age set but empty", []string{"CANARY_STICKY_MAX_AGE="}, "CANARY_STICKY_MAX_AGE"},
		{"mirror percent above 100", []string{"CANARY_MIRROR_PERCENT=101"}, "CANARY_MIRROR_PERCENT"},
		{"mirror percent negative", []string{"CANARY_MIRROR_PERCENT=-1"}, "CANARY_MIRROR_PERCENT"},
		{"mirror percent with a sign", []string{"CANARY_MIRROR_PERCENT=50%"}, "CANARY_MIRROR_PERCENT"},
		{"mirror percent too precise", []string{"CANARY_MIRROR_PERCENT=0.001"}, "CANARY_MIRROR_PERCENT"},
		{"mirror percent set but empty", []string{"CANARY_MIRROR_PERCENT="}, "CANARY_MIRROR_PERCENT"},
		{"mirror methods bad token", []string{"CANARY_MIRROR_METHODS=GET,PO ST"}, "CANARY_MIRROR_METHODS"},
		{"mirror methods empty item", []string{"CANARY_MIRROR_METHODS=GET,,POST"}, "CANARY_MIRROR_METHODS"},
		{"mirror methods connect", []string{"CANARY_MIRROR_METHODS=GET,CONNECT"}, "CANARY_MIRROR_METHODS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), nil, with(baseEnv(t), tc.env...), &stdout, &stderr)
			if code != exitConfig {
				t.Fatalf("exit = %d; want %d (stderr %q)", code, exitConfig, stderr.String())
			}
			if out := stderr.String(); strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "canaryd: "+tc.wantVar+":") {
				t.Errorf("stderr = %q; want one line naming %s", out, tc.wantVar)
			}
		})
	}
}

// The values reach the configuration, with their defaults.
func TestCohortConfig(t *testing.T) {
	c, err := loadConfig(baseEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.match != nil || c.trustedProxies != nil || c.StickySetCookie || c.StickyMaxAge != 24*time.Hour || c.mirrorPercent != 0 || c.mirrorMethods != nil {
		t.Errorf("defaults: match %v, proxies %v, set cookie %v, max age %v, mirror %d %v; want none, none, false, 24h, 0, nil",
			c.match, c.trustedProxies, c.StickySetCookie, c.StickyMaxAge, c.mirrorPercent, c.mirrorMethods)
	}
	c, err = loadConfig(with(baseEnv(t),
		"CANARY_MATCH=header:X-Beta=yes,header:User-Agent~(?i)employee|staff{1,2},cidr:10.0.0.0/8",
		"CANARY_TRUSTED_PROXIES=127.0.0.1,::1", "CANARY_STICKY_KEY=cookie:cid", "CANARY_STICKY_SET_COOKIE=true",
		"CANARY_STICKY_MAX_AGE=1h", "CANARY_MIRROR_PERCENT=12.5", "CANARY_MIRROR_METHODS=get,head,post"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.match) != 3 || c.match[1].Kind() != split.HeaderMatches || c.match[1].String() != "header:User-Agent~(?i)employee|staff{1,2}" ||
		len(c.trustedProxies) != 2 || !c.StickySetCookie || c.StickyMaxAge != time.Hour || c.mirrorPercent != 1250 ||
		strings.Join(c.mirrorMethods, ",") != "GET,HEAD,POST" {
		t.Errorf("parsed: match %v, proxies %v, set cookie %v, max age %v, mirror %d %v",
			c.match, c.trustedProxies, c.StickySetCookie, c.StickyMaxAge, c.mirrorPercent, c.mirrorMethods)
	}
}
