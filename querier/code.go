package querier

import (
	"math/bits"
	"time"
)

// The "floating point" codes of IGMPv3 and MLDv2 (RFC 3376 §4.1.1,
// §4.1.7; RFC 3810 §5.1.3, §5.1.9). Below 1<<(m+3), with m mantissa bits,
// a code is the value itself. Above, it is 1 | exp (3 bits) | mant (m bits)
// and stands for (mant | 1<<m) << (exp+3):
//
//	IGMPv3 Max Resp Code, QQIC (both), m = 4:   0 1 2 3 4 5 6 7
//	                                           +-+-+-+-+-+-+-+-+
//	                                           |1| exp | mant  |
//	                                           +-+-+-+-+-+-+-+-+
//	MLDv2 Maximum Response Code, m = 12:        |1| exp |        mant           |
//
// Each value the long form can hold has exactly one code, so decoding and
// encoding again gives the code back.

const (
	mant8  = 4  // mantissa bits of an 8-bit code
	mant16 = 12 // mantissa bits of MLDv2's 16-bit Maximum Response Code
)

// decodeFloat returns the value of code with mant mantissa bits.
func decodeFloat(code uint32, mant uint) uint32 {
	if code < 1<<(mant+3) {
		return code
	}
	m := code & (1<<mant - 1)
	exp := code >> mant & 7
	return (m | 1<<mant) << (exp + 3)
}

// encodeFloat returns the code with mant mantissa bits for the largest value
// it can hold that is not above v: codes round down, so that hosts answer
// no later than asked. Values above the largest get the largest.
func encodeFloat(v uint64, mant uint) uint32 {
	if v < 1<<(mant+3) {
		return uint32(v)
	}
	largest := uint64(1<<(mant+1)-1) << 10
	if v >= largest {
		return 1<<(mant+4) - 1
	}
	exp := uint(bits.Len64(v)) - mant - 1 - 3
	m := uint32(v>>(exp+3)) & (1<<mant - 1)
	return 1<<(mant+3) | uint32(exp)<<mant | m
}

// Units of the time codes on the wire.
const (
	igmpUnit = 100 * time.Millisecond // Max Resp Code of IGMPv2 and IGMPv3
	mldUnit  = time.Millisecond       // Maximum Response Code/Delay of MLD
	qqiUnit  = time.Second            // QQIC of IGMPv3 and MLDv2
)

// units returns d in whole units, never negative.
func units(d, unit time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / unit)
}

// MaxQueryInterval is the longest query interval a QQIC can carry
// (31744 s); a longer one is sent as that.
const MaxQueryInterval = 31744 * time.Second

// MaxResponseTime returns the longest Max Resp Time the queries of protocol
// p can carry: 25.5 s for IGMPv2, 3174.4 s for IGMPv3, 65.535 s for MLDv1,
// 8387.584 s for MLDv2, and 0 for IGMPv1, whose queries carry none.
func MaxResponseTime(p Protocol) time.Duration {
	switch p {
	case IGMPv2:
		return 255 * igmpUnit
	case IGMPv3:
		return time.Duration(decodeFloat(0xff, mant8)) * igmpUnit
	case MLDv1:
		return 0xffff * mldUnit
	case MLDv2:
		return time.Duration(decodeFloat(0xffff, mant16)) * mldUnit
	}
	return 0
}
