package pool

import (
	"fmt"
	"strconv"
	"strings"
)

// maxCPU bounds the CPU numbers ParseCPUList accepts, so that a typo such as
// "0-4000000000" is an error instead of a four-billion-entry list. It is the
// kernel's largest NR_CPUS (CONFIG_NR_CPUS_RANGE_END).
const maxCPU = 8191

// ParseCPUList parses a CPU list in the kernel's cpulist format, as used by
// `--cpus` and /sys/devices/system/cpu/online: comma-separated CPU numbers
// and inclusive ranges, "0-3,8". Spaces around items are ignored. The result
// keeps the order of the list; a CPU named twice, an empty item, a reversed
// range ("3-1") and a number above 8191 are errors that quote the item.
func ParseCPUList(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("parse CPU list %q: empty", s)
	}
	var cpus []int
	seen := map[int]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, err := parseCPURange(item)
		if err != nil {
			return nil, fmt.Errorf("parse CPU list %q: %w", s, err)
		}
		for c := lo; c <= hi; c++ {
			if seen[c] {
				return nil, fmt.Errorf("parse CPU list %q: CPU %d listed twice", s, c)
			}
			seen[c] = true
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// parseCPURange parses one item of a CPU list: "N" or "N-M" with N <= M.
func parseCPURange(item string) (lo, hi int, err error) {
	if item == "" {
		return 0, 0, fmt.Errorf("empty item")
	}
	first, last, isRange := strings.Cut(item, "-")
	if lo, err = parseCPU(item, first); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parseCPU(item, last); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("range %q ends before it starts", item)
	}
	return lo, hi, nil
}

// parseCPU parses one CPU number of item.
func parseCPU(item, num string) (int, error) {
	num = strings.TrimSpace(num)
	if num == "" {
		return 0, fmt.Errorf("%q: missing CPU number", item)
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q: %q is not a CPU number", item, num)
	}
	if n > maxCPU {
		return 0, fmt.Errorf("%q: CPU %d is above %d", item, n, maxCPU)
	}
	return int(n), nil
}
