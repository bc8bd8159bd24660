package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fleet's variables: a bad value is exit 2 with one line naming it.
func TestFleetConfigErrorsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o600)
	const ep = "CANARY_ETCD_ENDPOINTS=http://127.0.0.1:2379"
	for _, tc := range []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"endpoint without port", []string{"CANARY_ETCD_ENDPOINTS=http://etcd"}, "CANARY_ETCD_ENDPOINTS"},
		{"endpoint scheme", []string{"CANARY_ETCD_ENDPOINTS=unix:///run/etcd.sock"}, "CANARY_ETCD_ENDPOINTS"},
		{"one bad endpoint of two", []string{"CANARY_ETCD_ENDPOINTS=http://127.0.0.1:2379,etcd two:2379"}, "CANARY_ETCD_ENDPOINTS"},
		{"prefix without slashes", []string{ep, "CANARY_ETCD_PREFIX=canaryd"}, "CANARY_ETCD_PREFIX"},
		{"prefix set but empty", []string{ep, "CANARY_ETCD_PREFIX="}, "CANARY_ETCD_PREFIX"},
		{"lease TTL too short", []string{ep, "CANARY_ETCD_LEASE_TTL=1s"}, "CANARY_ETCD_LEASE_TTL"},
		{"lease TTL fraction", []string{ep, "CANARY_ETCD_LEASE_TTL=2500ms"}, "CANARY_ETCD_LEASE_TTL"},
		{"TLS over http", []string{ep, "CANARY_ETCD_CA_FILE=" + notPEM}, "CANARY_ETCD_ENDPOINTS"},
		{"CA file missing", []string{"CANARY_ETCD_ENDPOINTS=https://127.0.0.1:2379", "CANARY_ETCD_CA_FILE=" + filepath.Join(dir, "nope")}, "CANARY_ETCD_CA_FILE"},
		{"CA file not PEM", []string{"CANARY_ETCD_ENDPOINTS=https://127.0.0.1:2379", "CANARY_ETCD_CA_FILE=" + notPEM}, "CANARY_ETCD_CA_FILE"},
		{"cert without key", []string{"CANARY_ETCD_ENDPOINTS=https://127.0.0.1:2379", "CANARY_ETCD_CERT_FILE=" + notPEM}, "CANARY_ETCD_KEY_FILE"},
		{"cert not PEM", []string{"CANARY_ETCD_ENDPOINTS=https://127.0.0.1:2379", "CANARY_ETCD_CERT_FILE=" + notPEM, "CANARY_ETCD_KEY_FILE=" + notPEM}, "CANARY_ETCD_CERT_FILE"},
		{"username without password", []string{ep, "CANARY_ETCD_USERNAME=canaryd"}, "CANARY_ETCD_PASSWORD_FILE"},
		{"password file missing", []string{ep, "CANARY_ETCD_USERNAME=canaryd", "CANARY_ETCD_PASSWORD_FILE=" + filepath.Join(dir, "nope")}, "CANARY_ETCD_PASSWORD_FILE"},
		{"password file empty", []string{ep, "CANARY_ETCD_USERNAME=canaryd", "CANARY_ETCD_PASSWORD_FILE=" + empty}, "CANARY_ETCD_PASSWORD_FILE"},
		{"CA without endpoints", []string{"CANARY_ETCD_CA_FILE=" + notPEM}, "CANARY_ETCD_CA_FILE"},
		{"replica id with slash", []string{"CANARY_REPLICA_ID=web/1"}, "CANARY_REPLICA_ID"},
		{"replica id with space", []string{ep, "CANARY_REPLICA_ID=web 1"}, "CANARY_REPLICA_ID"},
		{"replica id too long", []string{"CANARY_REPLICA_ID=" + strings.Repeat("w", 129)}, "CANARY_REPLICA_ID"},
	} {
		t.Run(tc.name, func(t *testing.T) { exitsNaming(t, with(baseEnv(t), tc.env...), tc.wantVar) })
	}
}

// A fleet's configuration: endpoints split and trimmed, TLS for https://,
// the defaults.
func TestFleetConfig(t *testing.T) {
	c, err := loadConfig(with(baseEnv(t), "CANARY_ETCD_ENDPOINTS=http://127.0.0.1:2379, 127.0.0.1:22379"))
	if err != nil {
		t.Fatal(err)
	}
	if c.etcd == nil || strings.Join(c.etcd.Endpoints, ",") != "http://127.0.0.1:2379,127.0.0.1:22379" ||
		c.etcd.Prefix != "/canaryd/default/" || c.etcd.LeaseTTL != 5*time.Second || c.etcd.TLS != nil {
		t.Errorf("etcd config = %+v", c.etcd)
	}
	c, err = loadConfig(with(baseEnv(t), "CANARY_ETCD_ENDPOINTS=https://etcd.internal:2379", "CANARY_ETCD_PREFIX=/canaryd/shop/"))
	if err != nil {
		t.Fatal(err)
	}
	if c.etcd.TLS == nil || c.etcd.Prefix != "/canaryd/shop/" {
		t.Errorf("https endpoint: etcd config = %+v; want TLS and the prefix", c.etcd)
	}
	if c, err := loadConfig(baseEnv(t)); err != nil || c.etcd != nil {
		t.Errorf("without endpoints: etcd %+v, %v; want none (the state file)", c.etcd, err)
	}
}
