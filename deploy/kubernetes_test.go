package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const kubernetesDir = "kubernetes"

// yamlToJSON is the Python script that turns YAML files into one JSON object
// {file: [documents]}. The Go module has no YAML parser among its allowed
// dependencies; PyYAML (Debian: python3-yaml) is a complete YAML 1.1 parser,
// as Kubernetes' own, so the manifests are read as kubectl would read them
// rather than by a partial hand-written parser.
const yamlToJSON = `
import json, sys, yaml
out = {}
for f in sys.argv[1:]:
    with open(f) as fh:
        out[f] = [d for d in yaml.safe_load_all(fh) if d is not None]
json.dump(out, sys.stdout)
`

// loadYAML parses files with PyYAML. Without python3 and its yaml module the
// test is skipped, unless CANARY_REQUIRE_YAML=1 (CI installs python3-yaml)
// makes that a failure.
func loadYAML(t *testing.T, files ...string) map[string][]map[string]any {
	t.Helper()
	out, err := exec.Command("python3", "-c", yamlToJSON, files[0]).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("python3 with its yaml module is needed to parse the manifests (Debian: apt-get install python3-yaml): %v %s", err, bytes.TrimSpace(out))
		if os.Getenv("CANARY_REQUIRE_YAML") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command("python3", append([]string{"-c", yamlToJSON}, files...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("YAML does not parse: %v\n%s", err, stderr.String())
	}
	var docs map[string][]map[string]any
	if err := json.Unmarshal(out, &docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

// at walks a decoded JSON tree: at(v, "spec", "template", 0, "name").
func at(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, keys ...any) string { s, _ := at(v, keys...).(string); return s }

func list(v any, keys ...any) []any { l, _ := at(v, keys...).([]any); return l }

// subset reports whether every key of sel has the same value in labels.
func subset(sel, labels any) bool {
	s, _ := sel.(map[string]any)
	l, _ := labels.(map[string]any)
	for k, v := range s {
		if l[k] != v {
			return false
		}
	}
	return len(s) > 0
}

// TestKubernetesManifests parses deploy/kubernetes/ and checks that the
// pieces fit: the kustomization lists every file; the Deployment's probes
// hit /healthz and /readyz on the admin port; Services and the
// ServiceMonitor select what exists; the token comes from the Secret as a
// file; the state file lives on the persistent volume; the configuration
// names only variables canaryd knows; the pod runs unprivileged and drains
// within its grace period.
func TestKubernetesManifests(t *testing.T) {
	entries, err := os.ReadDir(kubernetesDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			files = append(files, filepath.Join(kubernetesDir, e.Name()))
		}
	}
	docs := loadYAML(t, files...)
	byKind := map[string][]map[string]any{}
	for _, f := range files {
		for _, d := range docs[f] {
			if str(d, "apiVersion") == "" || str(d, "kind") == "" {
				t.Errorf("%s: a document without apiVersion or kind", f)
			}
			if str(d, "kind") != "Kustomization" && str(d, "metadata", "name") == "" {
				t.Errorf("%s: %s without metadata.name", f, str(d, "kind"))
			}
			byKind[str(d, "kind")] = append(byKind[str(d, "kind")], d)
		}
	}
	one := func(kind string) map[string]any {
		if len(byKind[kind]) != 1 {
			t.Fatalf("want one %s, have %d", kind, len(byKind[kind]))
		}
		return byKind[kind][0]
	}

	kust := one("Kustomization")
	var listed []string
	for _, r := range list(kust, "resources") {
		listed = append(listed, filepath.Join(kubernetesDir, r.(string)))
	}
	for _, f := range files {
		if !strings.HasSuffix(f, "kustomization.yaml") && !slices.Contains(listed, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}

	dep := one("Deployment")
	if str(dep, "apiVersion") != "apps/v1" {
		t.Errorf("Deployment apiVersion %q", str(dep, "apiVersion"))
	}
	podLabels := at(dep, "spec", "template", "metadata", "labels")
	if !subset(at(dep, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("the Deployment's selector does not match its pod labels")
	}
	if r, _ := at(dep, "spec", "replicas").(float64); r != 1 || str(dep, "spec", "strategy", "type") != "Recreate" {
		t.Errorf("replicas %v, strategy %q; want 1 and Recreate (one process owns the state file)", r, str(dep, "spec", "strategy", "type"))
	}
	pod := at(dep, "spec", "template", "spec")
	if at(pod, "enableServiceLinks") != false {
		t.Errorf("enableServiceLinks must be false: Docker-link variables of a Service named canary… would be CANARY_*")
	}
	containers := list(pod, "containers")
	if len(containers) != 1 {
		t.Fatalf("want one container, have %d", len(containers))
	}
	c := containers[0]
	ports := map[string]float64{}
	for _, p := range list(c, "ports") {
		ports[str(p, "name")] = at(p, "containerPort").(float64)
	}
	for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if got, port := str(c, probe, "httpGet", "path"), at(c, probe, "httpGet", "port"); got != want || port != "admin" {
			t.Errorf("%s: GET %s on port %v; want %s on the admin port", probe, got, port, want)
		}
	}
	sc := at(c, "securityContext")
	if at(sc, "allowPrivilegeEscalation") != false || at(sc, "readOnlyRootFilesystem") != true || !slices.Contains(list(sc, "capabilities", "drop"), any("ALL")) {
		t.Errorf("container securityContext %v; want no privilege escalation, a read-only root and every capability dropped", sc)
	}
	if at(pod, "securityContext", "runAsNonRoot") != true || str(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("pod securityContext %v; want runAsNonRoot and the RuntimeDefault seccomp profile", at(pod, "securityContext"))
	}

	// The environment: the ConfigMap, plus the token file and the state file.
	cm := one("ConfigMap")
	env := map[string]string{}
	for k, v := range at(cm, "data").(map[string]any) {
		env[k] = fmt.Sprint(v)
	}
	if str(c, "envFrom", 0, "configMapRef", "name") != str(cm, "metadata", "name") {
		t.Errorf("the container does not take its environment from the ConfigMap %q", str(cm, "metadata", "name"))
	}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	known, err := readmeVariables()
	if err != nil {
		t.Fatal(err)
	}
	for k := range env {
		if !slices.Contains(known, k) {
			t.Errorf("%s is not a canaryd variable (README configuration table); canaryd would exit 2", k)
		}
	}
	for _, k := range []string{"CANARY_STABLE_URL", "CANARY_CANARY_URL", "CANARY_TOKEN_FILE", "CANARY_STATE_FILE"} {
		if env[k] == "" {
			t.Errorf("%s is not set", k)
		}
	}
	if _, set := env["CANARY_TOKEN"]; set {
		t.Errorf("CANARY_TOKEN in the environment: the token belongs in the Secret, mounted as CANARY_TOKEN_FILE")
	}
	for name, v := range map[string]string{"traffic": env["CANARY_LISTEN"], "admin": env["CANARY_ADMIN_LISTEN"]} {
		if want := fmt.Sprintf(":%.0f", ports[name]); !strings.HasSuffix(v, want) {
			t.Errorf("container port %s is %v but canaryd listens on %q", name, ports[name], v)
		}
	}
	mounts := map[string]string{} // volume name → mount path
	for _, m := range list(c, "volumeMounts") {
		mounts[str(m, "name")] = str(m, "mountPath")
	}
	volumes := map[string]any{}
	for _, v := range list(pod, "volumes") {
		volumes[str(v, "name")] = v
	}
	secret := one("Secret")
	tokenVol, tokenKey := "", path.Base(env["CANARY_TOKEN_FILE"])
	for name, mp := range mounts {
		if path.Dir(env["CANARY_TOKEN_FILE"]) == mp {
			tokenVol = name
		}
	}
	if str(volumes[tokenVol], "secret", "secretName") != str(secret, "metadata", "name") {
		t.Errorf("CANARY_TOKEN_FILE %s is not on a volume of the Secret %q", env["CANARY_TOKEN_FILE"], str(secret, "metadata", "name"))
	}
	token, ok := at(secret, "stringData", tokenKey).(string)
	if !ok {
		t.Errorf("the Secret has no key %q (the file CANARY_TOKEN_FILE reads)", tokenKey)
	}
	if len(token) >= 16 {
		t.Errorf("the Secret's placeholder token %q is long enough to be accepted: an unedited copy would run with a published token", token)
	}
	pvc := one("PersistentVolumeClaim")
	stateVol := ""
	for name, mp := range mounts {
		if path.Dir(env["CANARY_STATE_FILE"]) == mp {
			stateVol = name
		}
	}
	if str(volumes[stateVol], "persistentVolumeClaim", "claimName") != str(pvc, "metadata", "name") {
		t.Errorf("CANARY_STATE_FILE %s is not on the PersistentVolumeClaim %q: a rollback would not survive the pod", env["CANARY_STATE_FILE"], str(pvc, "metadata", "name"))
	}
	shutdown := 30 * time.Second
	if v := env["CANARY_SHUTDOWN_TIMEOUT"]; v != "" {
		if shutdown, err = time.ParseDuration(v); err != nil {
			t.Fatalf("CANARY_SHUTDOWN_TIMEOUT %q: %v", v, err)
		}
	}
	if grace, _ := at(pod, "terminationGracePeriodSeconds").(float64); time.Duration(grace)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v is not longer than CANARY_SHUTDOWN_TIMEOUT %v: the kubelet would kill a drain", grace, shutdown)
	}

	// Services select the pod and name its ports; the ServiceMonitor scrapes
	// the admin Service's /metrics under the job the alerts use.
	services := byKind["Service"]
	var adminSvc map[string]any
	for _, s := range services {
		if !subset(at(s, "spec", "selector"), podLabels) {
			t.Errorf("Service %s does not select the canaryd pod", str(s, "metadata", "name"))
		}
		for _, p := range list(s, "spec", "ports") {
			if _, ok := ports[str(p, "targetPort")]; !ok {
				t.Errorf("Service %s targets port %v, which the container does not name", str(s, "metadata", "name"), at(p, "targetPort"))
			}
			if str(p, "targetPort") == "admin" {
				adminSvc = s
			}
		}
	}
	if adminSvc == nil || str(adminSvc, "spec", "type") != "ClusterIP" {
		t.Fatalf("want a ClusterIP Service for the admin port")
	}
	sm := one("ServiceMonitor")
	if str(sm, "apiVersion") != "monitoring.coreos.com/v1" || !subset(at(sm, "spec", "selector", "matchLabels"), at(adminSvc, "metadata", "labels")) {
		t.Errorf("the ServiceMonitor does not select the admin Service")
	}
	for _, s := range services {
		if str(s, "metadata", "name") != str(adminSvc, "metadata", "name") && subset(at(sm, "spec", "selector", "matchLabels"), at(s, "metadata", "labels")) {
			t.Errorf("the ServiceMonitor also selects Service %s", str(s, "metadata", "name"))
		}
	}
	if ep := at(sm, "spec", "endpoints", 0); str(ep, "path") != "/metrics" || str(ep, "port") != str(adminSvc, "spec", "ports", 0, "name") {
		t.Errorf("ServiceMonitor endpoint %v; want /metrics on the admin Service's port", ep)
	}
	if job := str(adminSvc, "metadata", "labels", str(sm, "spec", "jobLabel")); job != "canaryd" {
		t.Errorf("Prometheus would label the scrape job=%q; the alert rules and the dashboard use job=\"canaryd\"", job)
	}
}

var readmeVariable = regexp.MustCompile(`CANARY_[A-Z0-9_]+`)

// readmeVariables returns the variables of the README's configuration
// table (which cmd/canaryd's tests hold equal to canaryd's own list).
func readmeVariables() ([]string, error) {
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		return nil, err
	}
	_, section, _ := strings.Cut(string(raw), "\n## Configuration\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var out []string
	for _, line := range strings.Split(section, "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 && strings.HasPrefix(line, "| `CANARY_") {
			out = append(out, readmeVariable.FindAllString(cells[1], -1)...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no variables found in the README's configuration table")
	}
	return out, nil
}
