// Package packaging holds no code: it tests what `make install` and
// `make package` put on a host — the systemd units mcrd.service and
// mcrd@.service, sysusers.d and tmpfiles.d entries, the config files, the
// .deb and .rpm built with nfpm (nfpm.yaml, maintainer scripts in deb/ and
// rpm/), the Grafana dashboard grafana/mcr.json, the Prometheus alert rules
// prometheus/mcr-alerts.yml and scripts/tune-kernel.sh — so that they stay
// valid as the code they describe changes.
//
// The units are checked with `systemd-analyze verify` and `security`; the
// template is run as systemd would run it, in throwaway network namespaces,
// and its /metrics are compared with every metric the dashboard and the
// alerts name; the alerts are unit-tested with `promtool test rules`; the
// .deb is checked with lintian and installed, upgraded, removed and purged
// on this machine. Each test skips, with a message, when a tool or root is
// missing (.ci/run installs the tools).
package packaging
