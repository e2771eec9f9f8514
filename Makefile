# mcr — build, test and run the multicast relay. Targets are listed by `make help`.

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/mcrelay/mcr/supervisor.Version=$(VERSION)
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)
FUZZTIME ?= 10s

.PHONY: help build test test-unit bench fuzz check demo install clean

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build mcrd, mcrctl and mcrgen into bin/
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

test: ## all tests; privileged namespace tests run when root
	$(GO) test -count=1 -timeout 12m ./...

test-unit: ## tests that need no root
	MCR_SKIP_PRIVILEGED=1 $(GO) test -count=1 ./...

bench: ## Go benchmarks (hot path, lookup) once each, then the side-by-side relay benchmark if present
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x ./... >/dev/null
	$(GO) test -run '^$$' -bench . -benchmem ./ruleset/ ./worker/...
	@if [ -x scripts/bench/run.sh ]; then scripts/bench/run.sh; fi

fuzz: ## run every fuzz target for FUZZTIME (default 10s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

check: ## gofmt, go vet, staticcheck, race-enabled unit tests
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if [ ! -x "$(STATICCHECK)" ]; then $(GO) install honnef.co/go/tools/cmd/staticcheck@latest; fi
	$(STATICCHECK) ./...
	MCR_SKIP_PRIVILEGED=1 $(GO) test -count=1 -race ./...

demo: build ## run the relay on a built-in namespace topology with live traffic and stats (root)
	scripts/demo.sh

install: build ## install binaries (PREFIX, DESTDIR)
	install -d $(BINDIR)
	install -m 0755 bin/mcrd bin/mcrctl bin/mcrgen $(BINDIR)/

clean: ## remove build output
	rm -rf bin
