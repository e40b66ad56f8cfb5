# kedge — `make run` starts kedge on its embedded Kafka; `make test` runs every test.
GO       ?= go
BIN      := bin/kedge
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 10s
# make test's fuzz smoke is bounded by executions, not time: with a
# duration, Go 1.26's fuzz coordinator can report a bare "context deadline
# exceeded" failure at the deadline (golang/go#75804, fixed in Go 1.27).
FUZZSMOKE ?= 2000x
GOLANGCI := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.6.2

.PHONY: all deps bench-deps console-client build run test js lint bench bench-full fuzz fuzz-smoke fuzz-run clean

all: build

deps:
	./.ci/deps

# The web console's copy of the TypeScript client (protocols/console/static/
# kedge-client.js, embedded in the binary). It is committed too, so a plain
# `go build` works; the js tests fail when the committed copy is stale.
console-client:
	cd protocols/ws/js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build

build: console-client
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/kedge

# Development server: embedded Kafka on 127.0.0.1:9092, data in ./kedge-data.
run: build
	./$(BIN) serve $(ARGS)

test: deps
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz-smoke
	$(MAKE) js

# The TypeScript client (protocols/ws/js): install the locked devDependencies
# from the npm registry, build dist/, and test it against real kedge processes.
js: build
	cd protocols/ws/js && npm ci --no-audit --no-fund && npm run build && TEST_KEDGE_BIN=$(CURDIR)/$(BIN) npm test

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) run $(GOLANGCI) run ./...

# The peer servers kedge bench measures kedge against (not needed by make test).
bench-deps:
	./.ci/deps bench

# Go benchmarks of the hot path, then a short whole-system smoke of kedge
# bench (every load of docs/benchmarks.md, small and brief).
bench: bench-deps build
	$(GO) test -run=NONE -bench=. -benchmem ./core/ ./protocols/...
	./$(BIN) bench targets --short

# The whole-system loads the targets are stated for (docs/benchmarks.md):
# minutes, 19,000 connections per protocol, peers in the same run.
bench-full: bench-deps build
	./$(BIN) bench targets

# Each fuzz target for FUZZTIME (go test runs one fuzz target at a time).
# A failing input is saved under the package's testdata/fuzz, where
# go test runs it from then on.
fuzz:
	@$(MAKE) --no-print-directory fuzz-run FUZZRUN=$(FUZZTIME)

# Every fuzz target briefly (FUZZSMOKE executions each; make test runs it): new inputs
# on every run, beyond the seed corpus go test already checks.
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz-run FUZZRUN=$(FUZZSMOKE)

fuzz-run:
	@for dir in $$($(GO) list -f '{{.Dir}}' ./...); do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | cut -c6-); do \
	    printf 'fuzz %-40s %s: ' "$${dir#$(CURDIR)/}.$$f" "$(FUZZRUN)"; \
	    out=$$($(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZRUN) $$dir 2>&1) || { echo FAIL; echo "$$out"; exit 1; }; \
	    echo "$$out" | grep -E '^fuzz: elapsed' | tail -1 | sed 's/^fuzz: //'; \
	  done; \
	done

clean:
	rm -rf bin kedge-data
