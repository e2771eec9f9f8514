package worker

import (
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewGSOLimits(t *testing.T) {
	tests := []struct {
		name    string
		maxSegs int
		mtu     int
		v6      bool
		want    gsoLimits
	}{
		{"IPv4 on Ethernet", 128, 1500, false, gsoLimits{maxSegs: 128, maxSeg: 1472, maxBytes: 65507}},
		{"IPv6 on Ethernet", 128, 1500, true, gsoLimits{maxSegs: 128, maxSeg: 1452, maxBytes: 65527}},
		{"IPv4 jumbo, older kernel", 64, 9000, false, gsoLimits{maxSegs: 64, maxSeg: 8972, maxBytes: 65507}},
		{"IPv6 minimum MTU", 128, 1280, true, gsoLimits{maxSegs: 128, maxSeg: 1232, maxBytes: 65527}},
		{"no UDP GSO", 0, 1500, false, gsoLimits{}},
		{"MTU not above the headers", 128, 28, false, gsoLimits{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := newGSOLimits(tc.maxSegs, tc.mtu, tc.v6)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(gsoLimits{})); diff != "" {
				t.Errorf("newGSOLimits(%d, %d, %v) (-want +got):\n%s", tc.maxSegs, tc.mtu, tc.v6, diff)
			}
		})
	}
}

// repeat returns n copies of size.
func repeat(n int, size int32) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func TestGSORun(t *testing.T) {
	eth4 := newGSOLimits(128, 1500, false)
	tests := []struct {
		name   string
		limits gsoLimits
		sizes  []int32
		want   int
	}{
		{"a lone datagram is plain", eth4, []int32{1024}, 1},
		{"equal sizes form a run", eth4, []int32{1024, 1024, 1024}, 3},
		{"the run ends before a larger one", eth4, []int32{1024, 1024, 1400, 1400}, 2},
		{"a shorter one ends the run", eth4, []int32{1024, 1024, 500, 500}, 3},
		{"a larger one after a lone datagram", eth4, []int32{1024, 1400, 1400}, 1},
		{"a shorter second one makes a run of two", eth4, []int32{1400, 1024, 1024}, 2},
		{"an empty datagram never ends a run", eth4, []int32{1024, 1024, 0}, 2},
		{"an empty datagram first is plain", eth4, []int32{0, 0, 0}, 1},
		{"one byte segments", eth4, []int32{1, 1, 1}, 3},
		{"at most maxSegs", eth4, repeat(200, 100), 128},
		{"at most 64 on older kernels", newGSOLimits(64, 1500, false), repeat(100, 100), 64},
		{"a segment the MTU cannot carry is plain", eth4, []int32{1473, 1473}, 1},
		{"the largest segment the MTU carries", eth4, []int32{1472, 1472}, 2},
		{"IPv6 headers are larger", newGSOLimits(128, 1500, true), []int32{1453, 1453}, 1},
		// 44 × 1472 = 64,768 bytes; a 45th would pass 65,507.
		{"at most 65,507 payload bytes per IPv4 send", eth4, repeat(60, 1472), 44},
		{"a shorter last one within the byte limit", eth4, append(repeat(44, 1472), 739), 45},
		{"a shorter last one past the byte limit", eth4, append(repeat(44, 1472), 740), 44},
		// 7 × 8,952 = 62,664, and a last 2,860 makes 65,524 of the
		// 65,527 bytes IPv6 allows.
		{"jumbo IPv6", newGSOLimits(128, 9000, true), append(repeat(7, 8952), 2860), 8},
		{"GSO off", gsoLimits{}, []int32{1024, 1024}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.limits.run(tc.sizes); got != tc.want {
				t.Errorf("run(%v) = %d, want %d", tc.sizes, got, tc.want)
			}
		})
	}
}

func TestGSOAfterRefusal(t *testing.T) {
	eth4 := newGSOLimits(128, 1500, false)
	tests := []struct {
		name    string
		errno   syscall.Errno
		seg     int
		mtu     int
		want    gsoLimits
		wantOff bool
	}{
		{"the MTU shrank below the segment", syscall.EMSGSIZE, 1024, 1000, newGSOLimits(128, 1000, false), false},
		{"the route's MTU is below the segment", syscall.EINVAL, 1024, 1000, newGSOLimits(128, 1000, false), false},
		{"EMSGSIZE although the segment fits", syscall.EMSGSIZE, 1024, 1500, gsoLimits{}, true},
		{"EMSGSIZE with an unknown MTU", syscall.EMSGSIZE, 1024, 0, gsoLimits{}, true},
		{"EMSGSIZE with an MTU too small for any segment", syscall.EMSGSIZE, 1024, 20, gsoLimits{}, true},
		{"no checksum offload", syscall.EIO, 1024, 1500, gsoLimits{}, true},
		{"too many segments or checksums off", syscall.EINVAL, 1024, 1500, gsoLimits{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !refusesGSO(tc.errno) {
				t.Fatalf("refusesGSO(%v) = false", tc.errno)
			}
			got, off := eth4.afterRefusal(tc.seg, tc.mtu, false)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(gsoLimits{})); diff != "" || off != tc.wantOff {
				t.Errorf("afterRefusal: off %v, want %v; limits (-want +got):\n%s", off, tc.wantOff, diff)
			}
			if !off && got.run([]int32{int32(tc.seg), int32(tc.seg)}) != 1 {
				t.Errorf("the refused segment size still forms runs")
			}
		})
	}
	for _, errno := range []syscall.Errno{syscall.EAGAIN, syscall.ENOBUFS, syscall.ECONNREFUSED, syscall.ENETUNREACH} {
		if refusesGSO(errno) {
			t.Errorf("refusesGSO(%v) = true; it is an error of the send, not of GSO", errno)
		}
	}
}
