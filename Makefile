SHELL := /bin/bash
# roster: `make test` runs every test (unit + e2e on the real engine),
# `make demo` runs the demo, `make bench` the benchmarks.
GO      ?= go
BIN     ?= bin/roster
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
UNIT    := $(shell $(GO) list ./... | grep -v /e2e)

.PHONY: all build test unit e2e vet fuzz demo demo-down bench fixture-image clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/roster

vet:
	$(GO) vet ./...

# Every test: unit tests (with the race detector) and the e2e tests
# against the real Docker engine. Nothing skips.
test: vet unit e2e

unit:
	$(GO) test -race -count=1 $(UNIT)

e2e:
	$(GO) test -count=1 -timeout 45m -v ./e2e/

fuzz:
	$(GO) test -fuzz=FuzzSlots -fuzztime=30s ./naming/
	$(GO) test -fuzz=FuzzHostname -fuzztime=30s ./naming/

# The demo image: the e2e fixture (a static Go HTTP server in FROM scratch).
fixture-image:
	@mkdir -p bin/fixture
	CGO_ENABLED=0 $(GO) build -o bin/fixture/fixture ./e2e/fixture
	cp e2e/fixture/Dockerfile bin/fixture/Dockerfile
	DOCKER_BUILDKIT=0 docker build -q -t roster-fixture:demo bin/fixture

demo: build fixture-image
	$(BIN) -f examples/demo/compose.yaml up -d
	$(BIN) -f examples/demo/compose.yaml scale web=3
	$(BIN) -f examples/demo/compose.yaml ps
	@echo; echo "docker rm -f demo-web-2, then: $(BIN) -f examples/demo/compose.yaml up -d  -> web_2 is back"; \
	 echo "stop it with: $(BIN) -f examples/demo/compose.yaml down"

demo-down: build
	$(BIN) -f examples/demo/compose.yaml down -v

# Benchmarks (bench/README.md): roster's DNS vs CoreDNS with dnsperf, and
# the Go benchmarks. `bench` is the full run and writes docs/benchmarks.md;
# `bench-quick` is the CI smoke (about 5 minutes, small sizes) and writes
# bin/bench/benchmarks-quick.md so it never dirties the committed results.
.PHONY: bench-quick
bench:
	GO=$(GO) bench/run.sh full docs/benchmarks.md

bench-quick:
	GO=$(GO) bench/run.sh quick bin/bench/benchmarks-quick.md

clean:
	rm -rf bin e2e.log
