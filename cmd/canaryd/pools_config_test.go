package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

// The pool and gRPC variables: a bad value exits 2 with one line naming
// the variable.
func TestPoolConfigErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"pool with an empty item", []string{"CANARY_STABLE_URL=http://127.0.0.1:9001,"}, "CANARY_STABLE_URL"},
		{"pool with a bad URL", []string{"CANARY_STABLE_URL=http://127.0.0.1:9001,ftp://x"}, "CANARY_STABLE_URL"},
		{"pool mixing schemes", []string{"CANARY_STABLE_URL=http://127.0.0.1:9001,https://127.0.0.1:9003"}, "CANARY_STABLE_URL"},
		{"pool listing a URL twice", []string{"CANARY_STABLE_URL=http://127.0.0.1:9001,http://127.0.0.1:9001/"}, "CANARY_STABLE_URL"},
		{"canary sharing a URL with stable", []string{"CANARY_STABLE_URL=http://127.0.0.1:9001,http://127.0.0.1:9003", "CANARY_CANARY_URL=http://127.0.0.1:9002,http://127.0.0.1:9003"}, "CANARY_CANARY_URL"},
		{"lb unknown", []string{"CANARY_LB=random"}, "CANARY_LB"},
		{"lb set but empty", []string{"CANARY_LB="}, "CANARY_LB"},
		{"dns refresh too short", []string{"CANARY_DNS_REFRESH=10ms"}, "CANARY_DNS_REFRESH"},
		{"dns refresh not a duration", []string{"CANARY_DNS_REFRESH=30"}, "CANARY_DNS_REFRESH"},
		{"eject failures negative", []string{"CANARY_EJECT_CONSECUTIVE_FAILURES=-1"}, "CANARY_EJECT_CONSECUTIVE_FAILURES"},
		{"eject failures not a number", []string{"CANARY_EJECT_CONSECUTIVE_FAILURES=five"}, "CANARY_EJECT_CONSECUTIVE_FAILURES"},
		{"eject time zero", []string{"CANARY_EJECT_TIME=0s"}, "CANARY_EJECT_TIME"},
		{"eject time above the cap", []string{"CANARY_EJECT_TIME=10m"}, "CANARY_EJECT_TIME"},
		{"h2c not a boolean", []string{"CANARY_H2C=yes"}, "CANARY_H2C"},
		{"error statuses bad", []string{"CANARY_ERROR_STATUSES=5xx,600"}, "CANARY_ERROR_STATUSES"},
		{"error statuses set but empty", []string{"CANARY_ERROR_STATUSES="}, "CANARY_ERROR_STATUSES"},
		{"grpc codes bad", []string{"CANARY_GRPC_ERROR_CODES=14,17"}, "CANARY_GRPC_ERROR_CODES"},
		{"grpc codes bad name", []string{"CANARY_GRPC_ERROR_CODES=UNAVAILBLE"}, "CANARY_GRPC_ERROR_CODES"},
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

// TestPoolConfig: the values reach the proxy's configuration.
func TestPoolConfig(t *testing.T) {
	c, err := loadConfig(baseEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.lb != proxy.LeastRequest || c.DNSRefresh != 30*time.Second || c.EjectConsecutiveFailures != 5 || c.EjectTime != 30*time.Second ||
		c.errorStatuses.String() != "5xx" || c.grpcErrorCodes.String() != "2,4,12,13,14,15" || c.H2C {
		t.Errorf("defaults: lb %v, dns %v, eject %d/%v, statuses %v, grpc %v, h2c %v", c.lb, c.DNSRefresh, c.EjectConsecutiveFailures, c.EjectTime, c.errorStatuses, c.grpcErrorCodes, c.H2C)
	}
	c, err = loadConfig(with(baseEnv(t),
		"CANARY_STABLE_URL=h2c://10.0.0.5:9000, h2c://10.0.0.6:9000,h2c://api.internal:9000/v2",
		"CANARY_CANARY_URL=h2c://10.0.0.7:9000",
		"CANARY_LB=round_robin", "CANARY_H2C=true", "CANARY_EJECT_CONSECUTIVE_FAILURES=0",
		"CANARY_ERROR_STATUSES=5xx,429", "CANARY_GRPC_ERROR_CODES=UNAVAILABLE,13"))
	if err != nil {
		t.Fatal(err)
	}
	var stable []string
	for _, u := range c.stable {
		stable = append(stable, u.String())
	}
	if got := strings.Join(stable, " "); got != "h2c://10.0.0.5:9000 h2c://10.0.0.6:9000 h2c://api.internal:9000/v2" || len(c.canary) != 1 {
		t.Errorf("stable pool = %s, canary %v", got, c.canary)
	}
	if c.lb != proxy.RoundRobin || !c.H2C || ejectAfter(c.EjectConsecutiveFailures) != -1 ||
		!c.errorStatuses.Contains(429) || c.errorStatuses.Contains(404) || c.grpcErrorCodes.String() != "13,14" {
		t.Errorf("lb %v, h2c %v, eject %d, statuses %v, grpc %v", c.lb, c.H2C, c.EjectConsecutiveFailures, c.errorStatuses, c.grpcErrorCodes)
	}
}

// CANARY_H2C is for a plaintext listener: with TLS it is refused.
func TestH2CWithTLSRefused(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir(), 1)
	_, err := loadConfig(with(baseEnv(t), "CANARY_TLS_CERT_FILE="+certFile, "CANARY_TLS_KEY_FILE="+keyFile, "CANARY_H2C=true"))
	if err == nil || !strings.HasPrefix(err.Error(), "CANARY_H2C:") {
		t.Errorf("CANARY_H2C with TLS: %v; want an error naming CANARY_H2C", err)
	}
}
