# stream-relay: `make run` runs the relay on embedded defaults; `make test`
# runs every test against real Redis and ClickHouse servers that it installs
# (apt-get, as root) and starts on loopback ports of their own.
SHELL := /bin/bash
GO ?= go
SERVICES := deployments/local/services.sh
# /usr/sbin: Debian's clickhouse-server and nginx, which a user's PATH may lack (the tests look them up).
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin

.PHONY: all build run demo test test-short chaos bench bench-quick lint helm-lint services services-stop docker-up docker-demo docker-down clean

all: build

build:
	$(GO) build -o bin/relay ./cmd/relay
	$(GO) build -o bin/mockllm ./cmd/mockllm

## run: the relay on embedded defaults (no Redis, no ClickHouse: in-process limits, spool files)
run: build
	./bin/relay -config configs/config.yaml

## demo: bin/mockllm + the relay in front of it, then one streamed request printed as it arrives
demo: build
	@bash deployments/local/demo.sh

## test: start Redis and ClickHouse (installing them when missing), then the whole suite with -race,
## then the whole suite again without -race
test:
	@$(SERVICES) start
	@if command -v npm >/dev/null; then (cd deployments/sdkcheck && { cmp -s package-lock.json node_modules/.sdkcheck-lock || { npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.sdkcheck-lock; } || echo "make test: npm ci failed in deployments/sdkcheck; TestOfficialSDKs will skip (fail when CI is set)" >&2; }); fi
	@eval "$$($(SERVICES) env)" && $(GO) test -race -count=1 -timeout 20m ./...
	@# A second pass without -race runs what -race leaves out: the zero-allocation tests (they carry
	@# //go:build !race, the detector allocates) and the raw socket system calls of internal/socket,
	@# which -race swaps for the ordinary ones; the relay's end-to-end tests then run through them.
	@eval "$$($(SERVICES) env)" && $(GO) test -count=1 -timeout 20m ./...

## test-short: unit tests only, no services needed
test-short:
	$(GO) test -short -count=1 ./...

## chaos: the chaos tests (app/chaos_*_test.go) with long settings, every fuzz target for
## FUZZTIME (20s) each, then one table; SOAK_DURATION=30m for a long soak (default 2m).
## make test runs the same tests with short settings (20s soak, 256 MiB body, 1,000 idle conns).
## The soak runs without -race here (its RSS bound only holds then); the other tests with -race.
chaos:
	@$(SERVICES) start
	@eval "$$($(SERVICES) env)" && GO=$(GO) bash deployments/local/chaos.sh

## bench: every scenario of bench/run.sh (relay vs nginx vs direct, ~25 min) and the micro
## benchmarks; writes bench/results/REPORT.md. BENCH_BIN/BENCH_SRC measure other binaries or
## another tree (e.g. a snapshot worktree); bin/ is built first only when BENCH_BIN is bin.
BENCH_BIN ?= bin
BENCH_SRC ?= .
BENCH_BUILD := $(if $(filter bin,$(BENCH_BIN)),build)

bench: $(BENCH_BUILD)
	@RELAY_CLICKHOUSE_OWN_FS=1 $(SERVICES) start
	@eval "$$($(SERVICES) env)" && bash bench/run.sh -b $(BENCH_BIN) -s $(BENCH_SRC)

## bench-quick: scenarios 1, 2 and 7 and one round of 4, short (< 2 min); writes bench/results/quick/REPORT.md
bench-quick: $(BENCH_BUILD)
	@bash bench/run.sh -q -b $(BENCH_BIN) -s $(BENCH_SRC)

## lint: gofmt, go vet, and helm-lint
lint: helm-lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

## helm-lint: helm lint and helm template on deployments/helm/stream-relay, with default values
## and with ci/all-on-values.yaml (StatefulSet + PVC, HPA, ServiceMonitor, ClickHouse cluster).
## Helm comes from the Go module proxy: the first run downloads and compiles it (2-5 min); later runs 4-12 s.
HELM ?= $(GO) run helm.sh/helm/v3/cmd/helm@v3.22.0
CHART := deployments/helm/stream-relay
HELM_KUBE ?= 1.33.0
HELM_ALL_ON := -f $(CHART)/ci/all-on-values.yaml

helm-lint:
	$(HELM) lint --strict --kube-version $(HELM_KUBE) $(CHART)
	$(HELM) lint --strict --kube-version $(HELM_KUBE) $(HELM_ALL_ON) $(CHART)
	@$(HELM) template stream-relay $(CHART) --kube-version $(HELM_KUBE) | grep -q '^kind: Deployment$$' \
		|| { echo "helm-lint: default values render no Deployment" >&2; exit 1; }
	@n=$$($(HELM) template stream-relay $(CHART) --kube-version $(HELM_KUBE) $(HELM_ALL_ON) \
		--api-versions monitoring.coreos.com/v1/ServiceMonitor | grep -cE '^kind: (StatefulSet|HorizontalPodAutoscaler|ServiceMonitor|PodDisruptionBudget|Secret)$$'); \
		test "$$n" = 6 || { echo "helm-lint: all-on values render $$n of 6 StatefulSet/HPA/ServiceMonitor/PDB/2 Secrets" >&2; exit 1; }
	@$(HELM) template stream-relay $(CHART) --kube-version $(HELM_KUBE) --set config.storage.clickhouse.password=x 2>&1 \
		| grep -q 'config.storage.clickhouse.password: a secret in the ConfigMap' || { echo "helm-lint: a password in config (the ConfigMap) was not refused" >&2; exit 1; }
	@echo "helm-lint: chart renders (default, all-on) and refuses secrets in the ConfigMap"

services:
	@$(SERVICES) start

services-stop:
	@$(SERVICES) stop

docker-up:
	docker compose -f deployments/docker/docker-compose.yml up -d --build

## docker-demo: the same with configs/demo.yaml, whose routes go to the mock upstream
docker-demo:
	RELAY_CONFIG=/app/configs/demo.yaml docker compose -f deployments/docker/docker-compose.yml up -d --build

docker-down:
	docker compose -f deployments/docker/docker-compose.yml down

clean:
	rm -rf bin data
