# agentgw make targets. `make run` and `make test` are the two commands a
# fresh machine needs; everything they need comes from the Go module proxy.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 20s
BENCHTIME ?= 1s
BENCH_MESSAGES ?= 20000
BENCH_MIX ?= plain,sealed,hostile
BENCH_OUT ?= bin/bench.json
BENCH_ARGS ?=

TS_DIR    := client/typescript
MCP_TS_DIR := internal/mcp/testdata/tsclient

.PHONY: all build static run test test-go test-verifier test-cross test-ts nats-server lint fuzz bench bench-micro ledger-mem soak clean

all: build

build:
	$(GO) build -o bin/agentgw ./cmd/agentgw

## static: the release binary deploy/Dockerfile and deploy/agentgw.service
## run: no cgo (a static executable for any Linux of GOARCH, e.g.
## GOARCH=arm64 make static), no build paths. It fails unless the result
## is static.
STATIC_BIN ?= bin/agentgw-static
static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(STATIC_BIN) ./cmd/agentgw
	@$(GO) version -m $(STATIC_BIN) | grep -q 'CGO_ENABLED=0' || { echo "$(STATIC_BIN): not built with CGO_ENABLED=0"; exit 1; }
	@if command -v file >/dev/null; then file $(STATIC_BIN) | grep -Eq 'statically linked|static-pie linked' || { file $(STATIC_BIN); echo "$(STATIC_BIN): not static"; exit 1; }; fi
	@echo "$(STATIC_BIN): static"

## run: start an embedded NATS server, the gateway and the demo; Ctrl-C stops.
run: build
	./bin/agentgw run --demo

## test: the whole suite: Go with the race detector, the verifier on the
## curve library's portable backends, the cross-builds, then the
## TypeScript SDK.
test: test-go test-verifier test-cross test-ts

## test-go also drives the official MCP TypeScript SDK client from
## internal/mcp (npm ci runs when its lockfile changed).
test-go: $(MCP_TS_DIR)/node_modules/.package-lock.json
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## test-verifier: envelope.PublicKey against crypto/ed25519 with
## curve25519-voi's portable 64-bit and 32-bit code instead of its AVX2
## backend (what a CPU without AVX2, or another GOARCH, runs).
VERIFIER_TESTS := 'MatchesStdlib|EdgeSignatures|KeyDecoding|PublicKeyVerify'
test-verifier:
	$(GO) test -count=1 -tags purego -run $(VERIFIER_TESTS) ./gateway/envelope
	$(GO) test -count=1 -tags force32bit -run $(VERIFIER_TESTS) ./gateway/envelope

## test-cross: the CLI and the packages a Go program imports build for
## Windows and macOS too (compiled, not run: their tests run on Linux).
CROSS_PKGS := ./cmd/... ./client/... ./gateway/... ./store/... ./subjects/... ./schemas/...
test-cross:
	GOOS=windows GOARCH=amd64 $(GO) build $(CROSS_PKGS)
	GOOS=darwin GOARCH=arm64 $(GO) build $(CROSS_PKGS)

## test-ts: the TypeScript SDK (client/typescript): unit tests, the test
## vectors of testdata/, and end-to-end tests against bin/agentgw and a
## nats-server built from the module. Needs node and npm (npm ci runs when
## the lockfile changed).
test-ts: build nats-server $(TS_DIR)/node_modules/.package-lock.json
	cd $(TS_DIR) && AGENTGW_BIN=$(CURDIR)/bin/agentgw NATS_SERVER_BIN=$(CURDIR)/bin/nats-server npm test

nats-server:
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2

$(TS_DIR)/node_modules/.package-lock.json: $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci

$(MCP_TS_DIR)/node_modules/.package-lock.json: $(MCP_TS_DIR)/package-lock.json
	cd $(MCP_TS_DIR) && npm ci --no-audit --no-fund

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## fuzz: run each fuzz target for FUZZTIME.
fuzz:
	@set -e; for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs grep -H -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/:func /:/'); do \
		file=$${spec%%:*}; name=$${spec##*:}; pkg=./$$(dirname $$file); \
		echo "== $$pkg $$name"; $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## bench: the gateway against the raw and the crypto relay, same run, same
## embedded server; prints a table and writes bin/bench.json. Override with
## BENCH_MESSAGES, BENCH_MIX, BENCH_ARGS (e.g. BENCH_ARGS="--cpuprofile cpu.prof").
bench:
	$(GO) run ./cmd/agentgw bench --messages $(BENCH_MESSAGES) --mix $(BENCH_MIX) --paced 0.5 --out $(BENCH_OUT) $(BENCH_ARGS)

## bench-micro: Go micro-benchmarks of every package (benchstat-comparable).
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

## ledger-mem: peak RSS, lookup and prune cost of the ledger with 1M live
## messages, in a fresh process (docs/performance.md). Override with
## LEDGERMEM_ARGS (e.g. LEDGERMEM_ARGS=-keep-outcomes).
LEDGERMEM_ARGS ?=
ledger-mem:
	$(GO) run ./internal/ledgermem $(LEDGERMEM_ARGS)

## soak: real nats-server and agentgw under load with random faults (kill -9,
## NATS restarts, pauses past AckWait) for DURATION, then the invariant checker.
DURATION ?= 10m
soak:
	$(GO) test -count=1 -v -run '^TestSoak$$' -timeout 0 ./internal/e2e/faults/ -soak=$(DURATION)

clean:
	rm -rf bin .agentgw $(TS_DIR)/build $(TS_DIR)/dist
