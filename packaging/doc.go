// Package packaging holds no code: it tests the files `make install` puts
// on a host — the systemd unit mcrd.service, the example config
// mcr.example.json and scripts/tune-kernel.sh — so that they stay valid as
// the code they describe changes.
//
// The unit is checked with `systemd-analyze verify` and the tuning script is
// run in a throwaway network and mount namespace; both tests skip when the
// tools or privileges they need are missing.
package packaging
