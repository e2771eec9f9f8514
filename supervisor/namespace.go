package supervisor

import (
	"os"

	"github.com/mcrelay/mcr/stats"
)

// namespaceCounters reads the kernel counters of the namespace GetStats
// reports; nil when they cannot be read, which is logged at debug level
// (a kernel without /proc/net/snmp will not grow one).
func (d *daemon) namespaceCounters() *stats.NamespaceCounters {
	if d.netSNMP == nil {
		return nil
	}
	text, err := d.netSNMP()
	if err == nil {
		var c stats.NamespaceCounters
		if c, err = stats.ParseSNMP(text); err == nil {
			return &c
		}
	}
	d.log.Debug("no namespace counters in GetStats", "err", err)
	return nil
}

// readNetSNMP reads /proc/net/snmp (a link to /proc/self/net), whose
// counters are those of the daemon's network namespace, where its workers
// run too.
func readNetSNMP() ([]byte, error) { return os.ReadFile("/proc/net/snmp") }
