//go:build !linux

package worker

import "errors"

// Run fails: the data plane needs Linux (AF_PACKET, PACKET_FANOUT).
func Run(cfg Config) error {
	return errors.New("mcr worker: the data plane runs on Linux only")
}
