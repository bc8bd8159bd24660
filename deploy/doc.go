// Package deploy holds canaryd's operations files rather than Go code: the
// systemd unit (systemd/), the Kubernetes manifests (kubernetes/), the
// Prometheus scrape configuration and alert rules (prometheus/, with promtool
// unit tests), the Grafana dashboard and its provisioning (grafana/).
//
// Its tests check those files: `go test ./deploy/` validates the dashboard,
// the rules' one-incident-one-page scenarios, the systemd unit (with
// systemd-analyze when installed) and the Kubernetes manifests (parsed with
// PyYAML when installed) and, when promtool is installed, runs
// `promtool check` and `promtool test rules`; `go test -tags integration
// ./deploy/` starts a real canaryd and a real Prometheus and proves that the
// rollback alerts page as documented and that every dashboard and alert
// expression returns data.
package deploy
