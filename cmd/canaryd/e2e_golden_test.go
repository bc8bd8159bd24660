package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// keyPaths lists every object key in v as a dotted path; array elements
// share the path "[]".
func keyPaths(prefix string, v any, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			keyPaths(p, e, out)
		}
	case []any:
		for _, e := range x {
			keyPaths(prefix+"[]", e, out)
		}
	}
}

// TestE2EAPIShapeGolden pins the JSON shape of the admin API (README, "Endpoints"):
// every key path of each answer is in testdata/golden/api-keys.json. Run
// with -update after an intended change.
func TestE2EAPIShapeGolden(t *testing.T) {
	stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
	in := start(t, testEnv(t, stable, canary, "CANARY_STEPS=10@1h,100@1h", "CANARY_SLO_MIN_REQUESTS=10",
		"CANARY_HEALTH_PATH=/healthz", "CANARY_HEALTH_INTERVAL=100ms"))
	in.send(200)
	in.waitFor("proceed", 50, func(c checkBody) bool { return c.Recommendation == "proceed" })
	in.adminPost("/rollout/rollback") // so the overview holds a rollback record and history
	got := map[string][]string{}
	for _, path := range []string{"/canary_check", "/dashboard/canary_overview", "/dashboard/health_summary", "/dashboard/integrity_details", "/dashboard/fleet", "/dashboard/history"} {
		_, body := in.adminGet(path, testToken)
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		keys := map[string]bool{}
		keyPaths("", v, keys)
		for k := range keys {
			got[path] = append(got[path], k)
		}
		slices.Sort(got[path])
	}
	file := filepath.Join(testdata, "golden", "api-keys.json")
	if *update {
		data, _ := json.MarshalIndent(got, "", "  ")
		os.MkdirAll(filepath.Dir(file), 0o755)
		if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -run APIShapeGolden -update to create it)", err)
	}
	var want map[string][]string
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	for path, keys := range want {
		for _, k := range keys {
			if !slices.Contains(got[path], k) {
				t.Errorf("%s lacks %s", path, k)
			}
		}
		for _, k := range got[path] {
			if !slices.Contains(keys, k) {
				t.Errorf("%s has %s, not in the golden file (run with -update if intended)", path, k)
			}
		}
	}
}
