# Targets that need system packages install them first (Debian/Ubuntu, apt).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
GO ?= go

.PHONY: run test deps deploy-tools lint bench bench-scale build compare soak

run:
	$(GO) run ./cmd/mcp-browser-proxy serve

build:
	$(GO) build -o mcp-browser-proxy ./cmd/mcp-browser-proxy

## test: install Chromium and redis-server if missing, then run every test with the race
## detector, then each fuzz target for FUZZTIME executions (their seed corpora under
## testdata/fuzz/ also run as ordinary tests above).
# An execution count, not a duration: Go 1.26's fuzz coordinator can fail a
# duration-bounded run with a spurious "context deadline exceeded" at the
# deadline on a loaded machine (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 20000x
test: deps
	$(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzValidateUserID$$' -fuzztime $(FUZZTIME) ./auth
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./auth
	$(GO) test -run '^$$' -fuzz '^FuzzValidateBrowserURL$$' -fuzztime $(FUZZTIME) ./router
	$(GO) test -run '^$$' -fuzz '^FuzzRedact$$' -fuzztime $(FUZZTIME) ./router
	$(GO) test -run '^$$' -fuzz '^FuzzParseURL$$' -fuzztime $(FUZZTIME) ./router
	$(GO) test -run '^$$' -fuzz '^FuzzRegisterBody$$' -fuzztime $(FUZZTIME) ./proxy

## deps: Debian's chromium and redis-server when missing (the store and
## shared-mode tests start their own redis-server on a free loopback port;
## none is expected to run).
deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	@command -v redis-server >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; }
	@if [ "$$CI" = true ]; then $(MAKE) --no-print-directory deploy-tools; fi

## deploy-tools: nginx and promtool (Debian's prometheus package) for the
## deploy/ tests, which skip without them. make test installs them only under
## CI=true (about 30 s of apt): on a desktop with systemd these packages also
## start an nginx on :80 and a Prometheus on :9090.
deploy-tools:
	@command -v nginx >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx prometheus; }

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

## soak: the load tests that make test leaves out (BENCHMARKS.md has their
## figures): the 60 s kill-and-restart soak over 10 browsers and 50 sessions,
## and the leak test at 500 abandoned sessions instead of 60.
soak: deps
	$(GO) test -race -count=1 -tags soak -timeout 20m -v -run '^(TestSoakKillRestart|TestAbandonedSessionsDoNotLeak)$$' ./proxy/

## bench: the latency benchmarks behind BENCHMARKS.md, then the one-instance
## scale figures (issue 12: idle SSE memory, status route against bare
## net/http, evaluate_script CPU and throughput against raw CDP, SSE setup),
## each run once for its own length with the proxy in a child process.
bench: deps
	$(GO) test -run '^$$' -bench . -skip '^BenchmarkScale' -benchtime 200x -count 3 ./proxy/
	$(MAKE) --no-print-directory bench-scale

bench-scale: deps
	@uptime
	$(GO) test -run '^$$' -bench '^BenchmarkScale' -skip 'Profile$$' -benchtime 1x -count 1 -timeout 20m ./proxy/
	@uptime

## compare: side by side with chrome-devtools-mcp and @playwright/mcp from npm
## (bench/package.json), on one Chromium; markdown for BENCHMARKS.md.
## Extra flags: make compare COMPARE_FLAGS='-n 200 -peer-n 50'
compare: deps
	@test -d bench/node_modules || PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix bench --no-audit --no-fund --no-package-lock
	$(GO) run ./bench/compare $(COMPARE_FLAGS)
