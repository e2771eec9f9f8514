// Package membershiptest is a fake of the kernel's multicast membership
// bookkeeping of helper sockets, for the tests of package membership and
// of what uses it.
package membershiptest
