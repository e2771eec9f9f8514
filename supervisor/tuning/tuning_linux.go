package tuning

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readHostTuning reads what tuningAdvice judges about the given input
// interfaces: GRO that merges UDP datagrams on an input, socket buffer caps
// the worker cannot override, a small per-CPU backlog where inputs use it.
// Interfaces that do not exist are skipped, and so is any check whose
// setting cannot be read (a sysctl hidden in a container, an ioctl the
// device refuses): a check that cannot be made never warns. It needs no
// ethtool binary and no privilege beyond what reading them takes.
func readHostTuning(inputIfaces []string) hostTuning {
	h := hostTuning{
		netAdmin: hasCapNetAdmin(),
		rmemMax:  readSysctlInt("net/core/rmem_max"),
		wmemMax:  readSysctlInt("net/core/wmem_max"),
		backlog:  readSysctlInt("net/core/netdev_max_backlog"),
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fd = -1 // interface checks below then find nothing
	} else {
		defer unix.Close(fd)
	}
	names := slices.Clone(inputIfaces)
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		if _, err := net.InterfaceByName(name); err != nil {
			continue // not there yet: the rule is pending
		}
		it := ifaceTuning{name: name, rps: rpsEnabled(name)}
		if fd >= 0 {
			it.features, _ = ethtoolFeatures(fd, name)
			if info, err := unix.IoctlGetEthtoolDrvinfo(fd, name); err == nil {
				it.driver = unix.ByteSliceToString(info.Driver[:])
			}
		}
		h.ifaces = append(h.ifaces, it)
	}
	return h
}

// hasCapNetAdmin reports whether CAP_NET_ADMIN is in this process's
// effective set (capget(2)); workers inherit it, and with it the *BUFFORCE
// socket options (socket(7)).
func hasCapNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}

// readSysctlInt reads an integer under /proc/sys; 0 when it cannot.
func readSysctlInt(path string) int64 {
	b, err := os.ReadFile("/proc/sys/" + path)
	if err != nil {
		return 0
	}
	v, err := parseSysctlInt(string(b))
	if err != nil {
		return 0
	}
	return v
}

// rpsEnabled reports whether any receive queue of the interface has RPS
// CPUs set (Documentation/networking/scaling.rst).
func rpsEnabled(ifname string) bool {
	masks, _ := filepath.Glob(filepath.Join("/sys/class/net", ifname, "queues", "rx-*", "rps_cpus"))
	for _, m := range masks {
		if b, err := os.ReadFile(m); err == nil && rpsMaskSet(string(b)) {
			return true
		}
	}
	return false
}

// ethtool commands and string set (include/uapi/linux/ethtool.h).
const (
	ethtoolGSSetInfo = unix.ETHTOOL_GSSET_INFO
	ethtoolGStrings  = unix.ETHTOOL_GSTRINGS
	ethtoolGFeatures = unix.ETHTOOL_GFEATURES
	ethSSFeatures    = 4 // ETH_SS_FEATURES
)

// ethtoolFeatures reads the interface's netdev features and whether each is
// active, as `ethtool -k` does, with three SIOCETHTOOL ioctls: the number of
// feature strings (ETHTOOL_GSSET_INFO), their names (ETHTOOL_GSTRINGS) and
// the feature bit blocks (ETHTOOL_GFEATURES). They work on every netdev,
// without driver support, and need no privilege.
func ethtoolFeatures(fd int, ifname string) (map[string]bool, error) {
	// struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
	info := make([]byte, 4+4+8+4)
	binary.NativeEndian.PutUint32(info[0:], ethtoolGSSetInfo)
	binary.NativeEndian.PutUint64(info[8:], 1<<ethSSFeatures)
	if err := ethtoolIoctl(fd, ifname, info); err != nil {
		return nil, fmt.Errorf("count features of %s (ETHTOOL_GSSET_INFO): %w", ifname, err)
	}
	if binary.NativeEndian.Uint64(info[8:]) == 0 {
		return nil, fmt.Errorf("count features of %s: no feature strings", ifname)
	}
	n := int(binary.NativeEndian.Uint32(info[16:]))

	// struct ethtool_gstrings: cmd, string_set, len, data[len*32].
	strs := make([]byte, 12+n*ethGStringLen)
	binary.NativeEndian.PutUint32(strs[0:], ethtoolGStrings)
	binary.NativeEndian.PutUint32(strs[4:], ethSSFeatures)
	binary.NativeEndian.PutUint32(strs[8:], uint32(n))
	if err := ethtoolIoctl(fd, ifname, strs); err != nil {
		return nil, fmt.Errorf("read feature names of %s (ETHTOOL_GSTRINGS): %w", ifname, err)
	}

	// struct ethtool_gfeatures: cmd, size (blocks), features[size].
	nblocks := (n + featureBlockWords - 1) / featureBlockWords
	feats := make([]byte, 8+nblocks*featureBlockSize)
	binary.NativeEndian.PutUint32(feats[0:], ethtoolGFeatures)
	binary.NativeEndian.PutUint32(feats[4:], uint32(nblocks))
	if err := ethtoolIoctl(fd, ifname, feats); err != nil {
		return nil, fmt.Errorf("read features of %s (ETHTOOL_GFEATURES): %w", ifname, err)
	}
	return parseFeatures(strs[12:], feats[8:], n)
}

// ifreqData is struct ifreq with ifr_data, the pointer SIOCETHTOOL reads
// its command from. The pointer is an unsafe.Pointer so that the buffer it
// points to stays alive while the ifreq does.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte // ifreq's union is 24 bytes
}

// ethtoolIoctl runs the ethtool command at the start of data on ifname; the
// kernel writes its answer into data.
func ethtoolIoctl(fd int, ifname string, data []byte) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q longer than %d bytes", ifname, unix.IFNAMSIZ-1)
	}
	ifr := ifreqData{data: unsafe.Pointer(&data[0])}
	copy(ifr.name[:], ifname)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if errno != 0 {
		return errno
	}
	return nil
}
