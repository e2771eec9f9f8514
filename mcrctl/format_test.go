package mcrctl

import "testing"

func TestUnits(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"pps zero", formatPPS(0), "0 pps"},
		{"pps below kilo", formatPPS(999.4), "999 pps"},
		{"pps rounds up to kilo", formatPPS(999.6), "1.0 Kpps"},
		{"pps kilo", formatPPS(12345.6), "12.3 Kpps"},
		{"pps hundreds of kilo", formatPPS(250_000), "250 Kpps"},
		{"pps mega", formatPPS(1_200_000), "1.2 Mpps"},
		{"bps", formatBPS(800), "800 bit/s"},
		{"bps mega", formatBPS(98_400_000), "98.4 Mbit/s"},
		{"bps giga", formatBPS(9_900_000_000), "9.9 Gbit/s"},
		{"bps beyond giga", formatBPS(400e9), "400 Gbit/s"},
		{"bytes", formatBytes(1023), "1023 B"},
		{"kibibytes", formatBytes(1536), "1.5 KiB"},
		{"mebibytes", formatBytes(15 << 20), "15.0 MiB"},
		{"gibibytes", formatBytes(3 << 30), "3.0 GiB"},
		{"uptime seconds", formatUptime(45.9), "45s"},
		{"uptime minutes", formatUptime(723), "12m03s"},
		{"uptime hours", formatUptime(3*3600 + 4*60 + 59), "3h04m"},
		{"uptime days", formatUptime(2*86400 + 3*3600), "2d03h"},
		{"one rule", counted(1, "rule"), "1 rule"},
		{"no rules", counted(0, "rule"), "0 rules"},
		{"rules", counted(3, "rule"), "3 rules"},
		{"one packet", counted(uint64(1), "packet"), "1 packet"},
		{"kernel drops", counted(uint64(5), "kernel drop"), "5 kernel drops"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}
