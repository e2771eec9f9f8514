# mcr — build, test and run the multicast relay. Targets are listed by `make help`.

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
# One version for the three binaries and the packages, from the newest v* tag
# (packaging/version.sh says how, and what a checkout without tags gets).
VERSION ?= $(shell packaging/version.sh)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -X github.com/mcrelay/mcr/supervisor.Version=$(VERSION) -X github.com/mcrelay/mcr/supervisor.Commit=$(COMMIT) \
	-X github.com/mcrelay/mcr/mcrctl.Version=$(VERSION) -X github.com/mcrelay/mcr/mcrgen.Version=$(VERSION)
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)
FUZZTIME ?= 10s

.PHONY: help build test test-unit bench fuzz check demo install uninstall clean

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

# Install layout. systemd looks for units in $(PREFIX)/lib/systemd/system for
# both PREFIX=/usr/local and PREFIX=/usr; for any other PREFIX, set
# UNITDIR=/etc/systemd/system. The unit's paths are rewritten to PREFIX. The
# config lives in /etc/mcr whatever PREFIX is, because the unit names it.
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SHAREDIR := $(DESTDIR)$(PREFIX)/share
CONFDIR  := $(DESTDIR)/etc/mcr

install: build ## install binaries, systemd unit, config, tune-kernel.sh, docs, shell completions (PREFIX, DESTDIR)
	install -d $(BINDIR) $(DESTDIR)$(UNITDIR) $(CONFDIR) $(SHAREDIR)/mcr $(SHAREDIR)/doc/mcr \
		$(SHAREDIR)/bash-completion/completions $(SHAREDIR)/zsh/site-functions $(SHAREDIR)/fish/vendor_completions.d
	install -m 0755 bin/mcrd bin/mcrctl bin/mcrgen $(BINDIR)/
	sed 's|/usr/local/|$(PREFIX)/|g' packaging/mcrd.service >$(DESTDIR)$(UNITDIR)/mcrd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/mcrd.service
	install -m 0755 scripts/tune-kernel.sh $(SHAREDIR)/mcr/tune-kernel.sh
	install -m 0644 packaging/mcr.example.json docs/*.md $(SHAREDIR)/doc/mcr/
	@# An existing config is the operator's: never overwrite it. A new host gets
	@# an empty ruleset, not the example, so that starting mcrd joins no groups
	@# and sends nothing until an operator adds rules.
	@if [ -e $(CONFDIR)/mcr.json ]; then echo "keeping existing $(CONFDIR)/mcr.json"; \
	else printf '{\n  "rules": []\n}\n' >$(CONFDIR)/mcr.json && chmod 0644 $(CONFDIR)/mcr.json && \
		echo "created $(CONFDIR)/mcr.json (no rules; example: $(PREFIX)/share/doc/mcr/mcr.example.json)"; fi
	bin/mcrctl completion bash >$(SHAREDIR)/bash-completion/completions/mcrctl
	bin/mcrctl completion zsh >$(SHAREDIR)/zsh/site-functions/_mcrctl
	bin/mcrctl completion fish >$(SHAREDIR)/fish/vendor_completions.d/mcrctl.fish
	@if [ -z "$(DESTDIR)" ]; then echo "now: systemctl daemon-reload && systemctl enable --now mcrd"; fi

uninstall: ## remove what install installed, except the config in /etc/mcr (PREFIX, DESTDIR)
	rm -f $(BINDIR)/mcrd $(BINDIR)/mcrctl $(BINDIR)/mcrgen $(DESTDIR)$(UNITDIR)/mcrd.service \
		$(SHAREDIR)/bash-completion/completions/mcrctl $(SHAREDIR)/zsh/site-functions/_mcrctl \
		$(SHAREDIR)/fish/vendor_completions.d/mcrctl.fish
	rm -rf $(SHAREDIR)/mcr $(SHAREDIR)/doc/mcr
	@echo "kept $(CONFDIR); remove it yourself if you no longer need the rules in it"

clean: ## remove build output
	rm -rf bin
