# mcr — build, test and run the multicast relay. Targets are listed by `make help`.

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
# One version for the three binaries and the packages, from the newest v* tag
# (packaging/version.sh says how, and what a checkout without tags gets).
ifeq ($(origin VERSION),undefined)
VERSION := $(shell packaging/version.sh)
endif
ifeq ($(origin COMMIT),undefined)
COMMIT  := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
endif
LDFLAGS := -X github.com/mcrelay/mcr/supervisor.Version=$(VERSION) -X github.com/mcrelay/mcr/supervisor.Commit=$(COMMIT) \
	-X github.com/mcrelay/mcr/mcrctl.Version=$(VERSION) -X github.com/mcrelay/mcr/mcrgen.Version=$(VERSION)
# Where build puts the binaries and what it adds to go build; package sets
# them for its own build.
BIN        ?= bin
BUILDFLAGS ?=
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)
FUZZTIME ?= 10s

.PHONY: help build test test-unit bench fuzz check demo install install-files uninstall package clean

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build mcrd, mcrctl and mcrgen into bin/ (BIN)
	$(GO) build $(BUILDFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The packaging tests run after the others, not beside them: building and
# installing packages (compiles, lintian, dpkg's fsyncs and triggers) costs
# the traffic tests of topology/ and worker/ packets on a 2-core machine.
test: ## all tests; privileged namespace tests run when root
	$(GO) test -count=1 -timeout 12m $$($(GO) list ./... | grep -v '/packaging$$')
	$(GO) test -count=1 -timeout 5m ./packaging

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

# Install layout. systemd (units, sysusers.d, tmpfiles.d) looks in
# $(PREFIX)/lib for both PREFIX=/usr/local and PREFIX=/usr; for any other
# PREFIX, set UNITDIR=/etc/systemd/system, SYSUSERSDIR=/etc/sysusers.d and
# TMPFILESDIR=/etc/tmpfiles.d. The units' paths are rewritten to PREFIX. The
# config lives in /etc/mcr whatever PREFIX is, because the units name it.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
# zsh's completions: Debian's zsh reads /usr/share/zsh/vendor-completions
# (the .deb sets it), other systems $(PREFIX)/share/zsh/site-functions.
ZSHDIR      ?= $(PREFIX)/share/zsh/site-functions
SHAREDIR := $(DESTDIR)$(PREFIX)/share
CONFDIR  := $(DESTDIR)/etc/mcr
MAN1DIR  := $(SHAREDIR)/man/man1

install: build ## install binaries, units, config, tune-kernel.sh, dashboard, alerts, docs, man pages, completions (PREFIX, DESTDIR)
	$(MAKE) --no-print-directory install-files

install-files: # install what build built; package calls it with its own BIN
	install -d $(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(CONFDIR) \
		$(SHAREDIR)/mcr/grafana $(SHAREDIR)/mcr/prometheus $(SHAREDIR)/doc/mcr $(MAN1DIR) \
		$(SHAREDIR)/bash-completion/completions $(DESTDIR)$(ZSHDIR) $(SHAREDIR)/fish/vendor_completions.d
	install -m 0755 $(BIN)/mcrd $(BIN)/mcrctl $(BIN)/mcrgen $(BINDIR)/
	for u in mcrd.service mcrd@.service; do \
		sed 's|/usr/local/|$(PREFIX)/|g' packaging/$$u >$(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -m 0644 packaging/sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/mcr.conf
	install -m 0644 packaging/tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/mcr.conf
	install -m 0755 scripts/tune-kernel.sh $(SHAREDIR)/mcr/tune-kernel.sh
	install -m 0644 packaging/grafana/mcr.json $(SHAREDIR)/mcr/grafana/mcr.json
	install -m 0644 packaging/prometheus/mcr-alerts.yml $(SHAREDIR)/mcr/prometheus/mcr-alerts.yml
	install -m 0644 README.md $(wildcard CHANGELOG.md) packaging/mcr.example.json docs/*.md $(SHAREDIR)/doc/mcr/
	@# An existing config is the operator's: never overwrite it. A new host gets
	@# an empty ruleset, not the example, so that starting mcrd joins no groups
	@# and sends nothing until an operator adds rules.
	@if [ -e $(CONFDIR)/mcr.json ]; then echo "keeping existing $(CONFDIR)/mcr.json"; \
	else install -m 0644 packaging/mcr.json $(CONFDIR)/mcr.json && \
		echo "created $(CONFDIR)/mcr.json (no rules; example: $(PREFIX)/share/doc/mcr/mcr.example.json)"; fi
	@# Pages dated by SOURCE_DATE_EPOCH (the commit's time), gzip -n: the same
	@# commit gives the same files. MCR_SOCKET= keeps the builder's out of them.
	for b in mcrd mcrctl mcrgen; do MCR_SOCKET= $(BIN)/$$b man $(MAN1DIR) || exit 1; done
	gzip -9nf $(MAN1DIR)/mcrd*.1 $(MAN1DIR)/mcrctl*.1 $(MAN1DIR)/mcrgen*.1
	$(BIN)/mcrctl completion bash >$(SHAREDIR)/bash-completion/completions/mcrctl
	$(BIN)/mcrctl completion zsh >$(DESTDIR)$(ZSHDIR)/_mcrctl
	$(BIN)/mcrctl completion fish >$(SHAREDIR)/fish/vendor_completions.d/mcrctl.fish
	@# The workers' account and /run/mcr, as the packages make them at install.
	@if [ -z "$(DESTDIR)" ]; then \
		if command -v systemd-sysusers >/dev/null; then systemd-sysusers $(SYSUSERSDIR)/mcr.conf && \
			systemd-tmpfiles --create $(TMPFILESDIR)/mcr.conf; \
		else echo "no systemd-sysusers: create the workers' account yourself:" \
			"useradd --system --no-create-home --shell /usr/sbin/nologin mcr-worker"; fi; \
		echo "now: systemctl daemon-reload && systemctl enable --now mcrd"; fi

uninstall: ## remove what install installed, except the config in /etc/mcr and the mcr-worker account (PREFIX, DESTDIR)
	rm -f $(BINDIR)/mcrd $(BINDIR)/mcrctl $(BINDIR)/mcrgen \
		$(DESTDIR)$(UNITDIR)/mcrd.service $(DESTDIR)$(UNITDIR)/mcrd@.service \
		$(DESTDIR)$(SYSUSERSDIR)/mcr.conf $(DESTDIR)$(TMPFILESDIR)/mcr.conf \
		$(MAN1DIR)/mcrd*.1.gz $(MAN1DIR)/mcrctl*.1.gz $(MAN1DIR)/mcrgen*.1.gz \
		$(SHAREDIR)/bash-completion/completions/mcrctl $(DESTDIR)$(ZSHDIR)/_mcrctl \
		$(SHAREDIR)/fish/vendor_completions.d/mcrctl.fish
	rm -rf $(SHAREDIR)/mcr $(SHAREDIR)/doc/mcr
	@echo "kept $(CONFDIR) and the mcr-worker account; remove them yourself if you no longer need them"

# Packages: the files `make install PREFIX=/usr` installs, wrapped by nfpm
# (packaging/nfpm.yaml, which says what is a config file and which scripts
# run). The binaries are built without cgo, position-independent and
# stripped: they need no shared library, not even libc, so one .rpm serves
# every distribution, and lintian wants PIE, stripped executables. They run
# on the build machine to write the man pages, so build on the target
# architecture.
DIST           ?= dist
PKG_ARCH       ?= $(shell $(GO) env GOARCH)
PKG_MAINTAINER ?= mcr maintainers <maintainers@mcrelay.invalid>
ifeq ($(origin SOURCE_DATE_EPOCH),undefined)
SOURCE_DATE_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
endif
export SOURCE_DATE_EPOCH

package: ## build the .deb and .rpm into dist/ (DIST, VERSION): what install installs, for PREFIX=/usr
	rm -rf $(DIST)/bin $(DIST)/deb $(DIST)/rpm $(DIST)/mcr_*.deb $(DIST)/mcr-*.rpm
	CGO_ENABLED=0 $(MAKE) --no-print-directory build BIN=$(DIST)/bin \
		BUILDFLAGS='-trimpath -buildmode=pie' LDFLAGS='$(LDFLAGS) -s -w'
	$(MAKE) --no-print-directory install-files BIN=$(DIST)/bin DESTDIR=$(abspath $(DIST))/deb PREFIX=/usr \
		ZSHDIR=/usr/share/zsh/vendor-completions
	$(MAKE) --no-print-directory install-files BIN=$(DIST)/bin DESTDIR=$(abspath $(DIST))/rpm PREFIX=/usr
	packaging/changelog.sh '$(VERSION)' '$(PKG_MAINTAINER)' '$(COMMIT)' | gzip -9n >$(DIST)/deb/usr/share/doc/mcr/changelog.gz
	for p in deb rpm; do \
		MCR_VERSION='$(VERSION)' MCR_ARCH='$(PKG_ARCH)' MCR_MAINTAINER='$(PKG_MAINTAINER)' MCR_STAGE=$(abspath $(DIST))/$$p \
		$(GO) tool nfpm package --config packaging/nfpm.yaml --packager $$p --target $(DIST)/ || exit 1; \
	done

clean: ## remove build output
	rm -rf bin dist
