// Package uring provides mcr's own small io_uring library: ring setup, SQE
// preparation for the network and file operations the worker uses, batched
// submit-and-wait, allocation-free CQE reaping, provided-buffer rings for
// multishot receive, and off-heap memory for everything the kernel reads or
// writes asynchronously.
//
// It is written directly over golang.org/x/sys/unix; the struct layouts and
// constants follow include/uapi/linux/io_uring.h and were checked against
// Linux 6.18. It needs Linux 5.11 (IORING_FEAT_EXT_ARG) at least; multishot
// receive and provided-buffer rings need 6.0.
//
// # Threads
//
// A Ring must be created and used by one goroutine that has called
// runtime.LockOSThread and stays locked for the ring's whole life. New asks
// the kernel for IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN, which binds the
// ring to the creating OS thread: io_uring_enter and io_uring_register from
// any other thread fail with EEXIST, and completions of poll-driven requests
// (a RECV that waited for data) are only posted while the owner thread is in
// io_uring_enter with GETEVENTS, i.e. inside SubmitAndWait.
//
// # Memory
//
// The kernel keeps using the memory behind an SQE's addresses until the
// operation completes, and never tells the Go garbage collector. Everything
// whose address goes into an SQE (packet buffers, msghdr, iovec, sockaddr,
// timespec) must therefore live outside the Go heap, for example in memory
// from Mmap, and stay mapped until the operation's final CQE is reaped.
//
// The Ring itself is Linux-only; on other systems New returns ErrUnavailable.
package uring
