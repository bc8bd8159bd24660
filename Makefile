# canaryd — see README.md. Every target is bounded in time.
GO        ?= go
BIN       ?= bin/canaryd
VERSION   ?= $(shell sh scripts/version.sh)
LDFLAGS   := -s -w -X main.version=$(VERSION)
DIST      ?= dist
PLATFORMS ?= linux/amd64 linux/arm64
PKGS      := ./...
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
SOAK_DURATION ?= 60s

.PHONY: all build release test test-unit test-rules test-fast-path-off test-fleet test-integration demo bench bench-load bench-verify lint fuzz soak clean

all: build test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/canaryd

## release: static binaries for every PLATFORMS entry, named with VERSION, and their SHA-256 sums (dist/SHA256SUMS).
release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; out=$(DIST)/canaryd-$(VERSION)-$$os-$$arch; \
		echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/canaryd; \
	done
	cd $(DIST) && sha256sum canaryd-* > SHA256SUMS && sha256sum -c SHA256SUMS
	@if [ "$$($(GO) env GOOS)/$$($(GO) env GOARCH)" = linux/amd64 ]; then $(DIST)/canaryd-$(VERSION)-linux-amd64 version; fi

## test: unit and end-to-end tests (real sockets on loopback), plus the alert rule tests when promtool is installed.
test: test-unit test-rules

test-unit:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -race -timeout 15m $(PKGS)

test-rules:
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check rules deploy/prometheus/alerts.yml && promtool test rules deploy/prometheus/alerts_test.yml; \
	else echo "test-rules: promtool not installed, skipping (apt-get install prometheus)"; fi

## test-fast-path-off: the end-to-end tests (but the fleet's) on net/http's server and the standard path, CANARY_FAST_PATH=off; `make test` runs them on the server loop and the fast path.
test-fast-path-off:
	CANARY_E2E_FAST_PATH=off $(GO) test -count=1 -race -timeout 20m ./cmd/canaryd -run 'E2E|Soak|Kill9' -skip 'Fleet'

## test-fleet: only the fleet's tests (a real etcd server; they skip without the etcd binary unless CANARY_REQUIRE_ETCD=1).
test-fleet:
	$(GO) test -count=1 -race -timeout 10m ./guard/etcdstore/... ./guard -run 'Fleet|Store|Prefix|Replica|Outage|Contract'
	$(GO) test -count=1 -race -timeout 10m ./cmd/canaryd -run 'Fleet'

## test-integration: a real Prometheus scraping a canaryd under load; every PromQL expression of the dashboard and the rules must return data.
test-integration:
	CANARY_REQUIRE_PROMETHEUS=1 $(GO) test -count=1 -tags integration -timeout 10m -v ./deploy/

demo:
	$(GO) run ./cmd/canaryd demo

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 1 ./split ./proxy/... ./guard/... ./cmd/canaryd

## bench-load: canaryd against nginx, 90/10 split, pinned to one core each (needs nginx, wrk, hey; FLEET=1 adds a replica of a fleet on etcd).
bench-load: build
	CANARYD=$(BIN) bash scripts/bench-load.sh

## soak: the fault-and-load test (weight changes, canary kills, rollbacks) for SOAK_DURATION.
soak:
	CANARY_SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 30m ./cmd/canaryd

bench-verify: build
	CANARYD=$(BIN) bash scripts/bench-verify.sh

lint:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)
	@# govulncheck needs its vulnerability database (vuln.go.dev, or GOVULNDB=file:///…).
	@if [ -n "$$GOVULNDB" ] || getent hosts vuln.go.dev >/dev/null 2>&1; then \
		$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.1.4 $${GOVULNDB:+-db $$GOVULNDB} $(PKGS); \
	else echo "lint: govulncheck skipped: vuln.go.dev is unreachable from this machine and GOVULNDB is not set"; fi

## fuzz: every fuzz target for FUZZTIME each (seed corpora under each package's testdata/fuzz).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin $(DIST)
