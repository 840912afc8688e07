# Targets that need system packages install them first (Debian/Ubuntu, apt).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
GO ?= go

.PHONY: run test deps lint bench build

run:
	$(GO) run ./cmd/mcp-browser-proxy serve

build:
	$(GO) build -o mcp-browser-proxy ./cmd/mcp-browser-proxy

## test: install Chromium if missing, then run every test with the race detector.
test: deps
	$(GO) test -race -count=1 -timeout 15m ./...

deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

## bench: the latency benchmarks behind BENCHMARKS.md.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 200x -count 3 ./proxy/
