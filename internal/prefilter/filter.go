package prefilter

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// MaxInstructions is the kernel's limit on the length of a classic BPF
// program (BPF_MAXINSNS, include/uapi/linux/bpf_common.h).
const MaxInstructions = 4096

// maxBuild is the longest program Build makes: room is left for
// DropVLANTagged's guard in front of it.
const maxBuild = MaxInstructions - len(vlanGuard)

// SnapLen is what the program returns to accept a packet: the number of bytes
// to keep, more than any packet has (PACKET_FANOUT_FLAG_DEFRAG hands over
// reassembled IPv4 datagrams of up to 64 KiB), so packets are never cut.
const SnapLen = 0x40000

// Match is one (destination address, UDP destination port) pair an
// interface's rules want. Rule sources do not take part: the worker's rule
// lookup checks them.
type Match struct {
	// Dst is the destination address, IPv4 (or IPv4-mapped) or IPv6. A zone
	// is ignored.
	Dst netip.Addr
	// Port is the UDP destination port, 1..65535.
	Port uint16
}

// Program is a built filter.
type Program struct {
	// Instructions is the assembled program, for Attach.
	Instructions []bpf.RawInstruction
	// Exact reports whether the program accepts only what the matches
	// name (see Build). When false the set did not fit MaxInstructions
	// exactly and the program accepts a superset; the worker's rule
	// lookup drops the difference, at the cost of copying it to userspace.
	Exact bool
}

// Packet layout offsets, from the start of the IP header.
const (
	v4Proto    = 9
	v4Flags    = 6      // flags and fragment offset, 16 bits
	v4FragMask = 0x3fff // MF and the 13-bit offset: set on every fragment
	v4Dst      = 16
	v6Next     = 6
	v6Dst      = 24
	v6Ext      = 40 // first extension header
	v6Port     = 42 // UDP destination port when the UDP header follows the fixed header

	protoHopByHop = 0
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoDestOpts = 60
)

var (
	loadPort4 = bpf.LoadIndirect{Off: 2, Size: 2} // X holds the IPv4 header length
	loadPort6 = bpf.LoadAbsolute{Off: v6Port, Size: 2}
)

// DropAll returns a program that accepts nothing: the filter for an
// interface no rule wants, and the one to attach before bind(2) while the
// real program is not built yet.
func DropAll() []bpf.RawInstruction {
	return []bpf.RawInstruction{{Op: 0x06, K: 0}} // BPF_RET|BPF_K 0
}

// Build returns the filter for one input interface, for a packet that
// starts at the IP header (AtNetworkHeader adapts it to the input
// sockets). The program accepts:
//   - IPv4 UDP datagrams, not fragmented, to a listed (destination, port);
//   - IPv4 UDP fragments to a listed destination, so the worker counts them
//     (with PACKET_FANOUT_FLAG_DEFRAG the kernel reassembles IPv4 before the
//     filter runs, so these are rare);
//   - IPv6 UDP datagrams directly after the fixed header to a listed
//     (destination, port);
//   - IPv6 packets to a listed destination whose first header is
//     Hop-by-Hop, Routing, Fragment or Destination Options (after a
//     Hop-by-Hop header: UDP or one of those). The worker walks the chain
//     and relays or counts them; DEFRAG does not reassemble IPv6.
//
// and drops everything else, including ICMPv6 and MLD to listed groups and
// packets too short for the fields the program reads. No matches gives
// DropAll.
//
// An exact program costs about 6 instructions per destination and 1 per
// further port on it, so about 670 destinations with one port each fit
// MaxInstructions. Destinations that all want the same ports are filtered
// as address ranges instead, which costs 1 or 2 instructions per run of
// consecutive addresses: 5,000 consecutive groups on one port take a few
// dozen. When neither fits, Build coarsens the set until it does: it merges
// the closest address and port ranges, and for IPv6 checks fewer leading
// address words, always keeping every wanted datagram; Program.Exact is then
// false. Build fails only on an invalid Match.
//
// The program dispatches on the IP version nibble, so one program serves
// both the interface's ETH_P_IP and ETH_P_IPV6 sockets. Building is not
// free (about 20 ms for 5,000 scattered pairs): rebuild once per batch of
// rule changes, not once per rule.
func Build(matches []Match) (Program, error) {
	v4, v6, err := group(matches)
	if err != nil {
		return Program{}, err
	}
	if len(v4) == 0 && len(v6) == 0 {
		return Program{Instructions: DropAll(), Exact: true}, nil
	}
	insns, exact := generate(newFamily(v4, false), newFamily(v6, true))
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return Program{}, fmt.Errorf("assemble filter: %w", err)
	}
	return Program{Instructions: raw, Exact: exact}, nil
}

// dest is one destination address with the ports wanted on it.
type dest struct {
	words []uint32 // the address as network-order words: 1 for IPv4, 4 for IPv6
	ports []uint16 // sorted, distinct
}

// group validates matches and gathers them into per-family destinations,
// sorted by address.
func group(matches []Match) (v4, v6 []dest, err error) {
	ports := make(map[netip.Addr][]uint16)
	for i, m := range matches {
		if !m.Dst.IsValid() {
			return nil, nil, fmt.Errorf("filter match %d: no destination address", i)
		}
		if m.Port == 0 {
			return nil, nil, fmt.Errorf("filter match %d (%v): port must be 1..65535", i, m.Dst)
		}
		a := m.Dst.WithZone("").Unmap()
		ports[a] = append(ports[a], m.Port)
	}
	addrs := make([]netip.Addr, 0, len(ports))
	for a := range ports {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		p := ports[a]
		slices.Sort(p)
		d := dest{words: words(a), ports: slices.Compact(p)}
		if a.Is4() {
			v4 = append(v4, d)
		} else {
			v6 = append(v6, d)
		}
	}
	return v4, v6, nil
}

// words splits an address into big-endian 32-bit words, the unit a
// BPF_LD|BPF_W|BPF_ABS load reads.
func words(a netip.Addr) []uint32 {
	b := a.AsSlice()
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = uint32(b[4*i])<<24 | uint32(b[4*i+1])<<16 | uint32(b[4*i+2])<<8 | uint32(b[4*i+3])
	}
	return w
}

// generate returns the program for both families (either may be nil) and
// whether it is exact. It uses each family's shortest exact form if the
// program fits; otherwise it coarsens the largest reducible part until the
// program fits, and then gives back the exact form to each family for which
// the program still fits.
func generate(v4, v6 *family) ([]bpf.Instruction, bool) {
	fams := [2]*family{v4, v6}
	var secs [2]section
	for i, f := range fams {
		if f != nil {
			secs[i] = f.precise()
		}
	}
	if prog := program(secs); len(prog) <= maxBuild {
		return prog, true
	}
	for {
		for i, f := range fams {
			if f != nil {
				secs[i] = f.shortest()
			}
		}
		prog := program(secs)
		if excess := len(prog) - maxBuild; excess > 0 {
			// Aim a little below the limit: tests are grouped in
			// segments of 255 that each add an instruction.
			if !reduceLargest(fams[:], excess+excess/128+1) {
				panic(fmt.Sprintf("filter: internal error: minimal program has %d instructions", len(prog)))
			}
			continue
		}
		for i, f := range fams {
			if f == nil || secs[i].exact {
				continue
			}
			try := secs
			try[i] = section{f.exact, true}
			if p := program(try); len(p) <= maxBuild {
				secs, prog = try, p
			}
		}
		return prog, secs[0].exact && secs[1].exact
	}
}

// section is one family's part of the program.
type section struct {
	code  []bpf.Instruction // nil: the family has no destinations
	exact bool
}

// program lays out the version dispatch and the IPv4 and IPv6 sections.
func program(secs [2]section) []bpf.Instruction {
	out := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0}, // version nibble
	}
	for i, version := range []uint32{0x40, 0x60} {
		if secs[i].code != nil {
			out = append(out, ifThen(bpf.JumpEqual, version, secs[i].code)...)
		}
	}
	return append(out, drop)
}

// family holds one IP version's destinations in two forms: exact (ports per
// destination) and coarse (address ranges × port ranges), which generate
// may reduce.
type family struct {
	v6     bool
	exact  []bpf.Instruction
	coarse coarse
}

func newFamily(dests []dest, v6 bool) *family {
	if len(dests) == 0 {
		return nil
	}
	f := &family{v6: v6, coarse: newCoarse(dests)}
	if v6 {
		f.exact = exact6(dests)
	} else {
		f.exact = exact4(dests)
	}
	return f
}

func (f *family) coarseCode() []bpf.Instruction {
	if f.v6 {
		return coarse6(&f.coarse)
	}
	return coarse4(&f.coarse)
}

// precise returns the shorter of the family's exact forms: the per-
// destination one, or the coarse one when all destinations want the same
// ports.
func (f *family) precise() section {
	if c := f.coarseCode(); !f.coarse.lossy && len(c) < len(f.exact) {
		return section{c, true}
	}
	return section{f.exact, true}
}

// shortest returns the family's shorter form, exact or not.
func (f *family) shortest() section {
	if c := f.coarseCode(); len(c) < len(f.exact) {
		return section{c, !f.coarse.lossy}
	}
	return section{f.exact, true}
}

// reduceLargest cuts about excess instructions from the costliest reducible
// part of the families' coarse forms. It reports false when nothing is left
// to reduce. A family whose exact form is in use switches to its coarse form
// once that has become the shorter.
func reduceLargest(fams []*family, excess int) bool {
	var best *component
	for _, f := range fams {
		if f == nil {
			continue
		}
		for _, c := range f.coarse.components() {
			if best == nil || c.cost > best.cost {
				best = &c
			}
		}
	}
	if best == nil {
		return false
	}
	best.reduce(excess)
	return true
}

// exact4 is the IPv4 section of an exact program.
func exact4(dests []dest) []bpf.Instruction {
	out := []bpf.Instruction{bpf.LoadAbsolute{Off: v4Proto, Size: 1}}
	out = append(out, ifThen(bpf.JumpNotEqual, protoUDP, []bpf.Instruction{drop})...)
	out = append(out, bpf.LoadAbsolute{Off: v4Flags, Size: 2})
	out = append(out, ifThen(bpf.JumpBitsSet, v4FragMask, tree(v4Dst, 0, destKeys(dests, nil)))...)
	out = append(out, bpf.LoadMemShift{Off: 0}) // X = 4*(IHL)
	return append(out, tree(v4Dst, 0, destKeys(dests, loadPort4))...)
}

// exact6 is the IPv6 section of an exact program.
func exact6(dests []dest) []bpf.Instruction {
	out := []bpf.Instruction{bpf.LoadAbsolute{Off: v6Next, Size: 1}}
	out = append(out, ifThen(bpf.JumpEqual, protoUDP, tree(v6Dst, 0, destKeys(dests, loadPort6)))...)
	out = append(out, extHeaders6()...)
	return append(out, tree(v6Dst, 0, destKeys(dests, nil))...)
}

// destKeys turns destinations into tree keys. With a port load, each key's
// leaf accepts the destination's ports; without, a key accepts.
func destKeys(dests []dest, loadPort bpf.Instruction) []key {
	keys := make([]key, len(dests))
	for i, d := range dests {
		last := d.words[len(d.words)-1]
		keys[i] = key{prefix: d.words[:len(d.words)-1], spans: []span{{last, last}}}
		if loadPort != nil {
			keys[i].leaf = append([]bpf.Instruction{loadPort}, member(portSpans(d.ports), hitAccept)...)
		}
	}
	return keys
}

// extHeaders6 continues when A, the IPv6 next header, is not UDP but may
// lead to it: Hop-by-Hop (followed by UDP or another such header), Routing,
// Fragment or Destination Options. Anything else — ICMPv6 and MLD behind
// Hop-by-Hop, ESP, AH, No Next Header — is dropped.
func extHeaders6() []bpf.Instruction {
	return append([]bpf.Instruction{
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoHopByHop, SkipTrue: 1},
		bpf.LoadAbsolute{Off: v6Ext, Size: 1}, // next header after Hop-by-Hop
	}, member([]span{{protoUDP, protoUDP}, {protoRouting, protoFragment}, {protoDestOpts, protoDestOpts}}, hitContinue)...)
}

// coarse4 is the IPv4 section of a coarse program: port in ports (not for
// fragments, whose UDP header may be elsewhere), then destination in the
// address ranges.
func coarse4(c *coarse) []bpf.Instruction {
	out := []bpf.Instruction{bpf.LoadAbsolute{Off: v4Proto, Size: 1}}
	out = append(out, ifThen(bpf.JumpNotEqual, protoUDP, []bpf.Instruction{drop})...)
	out = append(out, bpf.LoadAbsolute{Off: v4Flags, Size: 2})
	portCheck := append([]bpf.Instruction{bpf.LoadMemShift{Off: 0}, loadPort4}, member(c.ports, hitContinue)...)
	out = append(out, ifThen(bpf.JumpBitsNotSet, v4FragMask, portCheck)...)
	return append(out, tree(v4Dst, 0, c.keys)...)
}

// coarse6 is the IPv6 section of a coarse program: UDP right after the
// fixed header must have a port in ports, other packets must pass
// extHeaders6; then the destination must be in the address ranges.
func coarse6(c *coarse) []bpf.Instruction {
	portCheck := append([]bpf.Instruction{loadPort6}, member(c.ports, hitContinue)...)
	notUDP := append(extHeaders6(), bpf.Jump{Skip: uint32(len(portCheck))})
	out := []bpf.Instruction{bpf.LoadAbsolute{Off: v6Next, Size: 1}}
	out = append(out, ifThen(bpf.JumpNotEqual, protoUDP, notUDP)...)
	out = append(out, portCheck...)
	return append(out, tree(v6Dst, 0, c.keys)...)
}

// portSpans turns sorted distinct ports into spans of consecutive ports.
func portSpans(ports []uint16) []span {
	vals := make([]uint32, len(ports))
	for i, p := range ports {
		vals[i] = uint32(p)
	}
	return runs(vals)
}

// runs turns sorted distinct values into spans of consecutive values.
func runs(vals []uint32) []span {
	var out []span
	for _, v := range vals {
		if n := len(out); n > 0 && out[n-1].hi+1 == v {
			out[n-1].hi = v
			continue
		}
		out = append(out, span{v, v})
	}
	return out
}

// ErrUnfiltered reports that Attach left the socket without its prefilter:
// the kernel would not take the program, and a stale one would drop
// datagrams that new rules want. The socket keeps the guard against
// VLAN-tagged frames (DropVLANTagged) and passes everything else.
// Relaying stays correct; only the kernel-side drop of unwanted traffic is
// lost.
var ErrUnfiltered = errors.New("socket left without a prefilter")
