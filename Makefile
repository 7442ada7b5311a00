# stream-relay: `make run` runs the relay on embedded defaults; `make test`
# runs every test against real Redis and ClickHouse servers that it installs
# (apt-get, as root) and starts on loopback ports of their own.
SHELL := /bin/bash
GO ?= go
SERVICES := deployments/local/services.sh
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build run demo test test-short bench lint services services-stop docker-up docker-down clean

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

## test: start Redis and ClickHouse (installing them when missing), then the whole suite with -race
test:
	@$(SERVICES) start
	@if command -v npm >/dev/null; then (cd deployments/sdkcheck && { cmp -s package-lock.json node_modules/.sdkcheck-lock || { npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.sdkcheck-lock; } || echo "make test: npm ci failed in deployments/sdkcheck; TestOfficialSDKs will skip (fail when CI is set)" >&2; }); fi
	@eval "$$($(SERVICES) env)" && $(GO) test -race -count=1 -timeout 20m ./...

## test-short: unit tests only, no services needed
test-short:
	$(GO) test -short -count=1 ./...

bench: build
	@$(SERVICES) start
	@eval "$$($(SERVICES) env)" && $(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

services:
	@$(SERVICES) start

services-stop:
	@$(SERVICES) stop

docker-up:
	docker compose -f deployments/docker/docker-compose.yml up -d --build

docker-down:
	docker compose -f deployments/docker/docker-compose.yml down

clean:
	rm -rf bin data
