//go:build linux && race

package netpoll

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioSync orders, for the race detector, what one goroutine did before it
// wrote to a socket before what another does after reading from one, as the
// ordinary syscall wrappers do for theirs. The raw socket I/O of
// sys_linux.go calls these instead.
var ioSync uint64

// raceRead: the kernel wrote p, and whatever was written before the bytes
// were sent happened before.
func raceRead(p []byte) {
	if len(p) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&p[0]), len(p))
		runtime.RaceAcquire(unsafe.Pointer(&ioSync))
	}
}

// raceRelease comes before a write: what happened so far happens before
// what the reader does next.
func raceRelease() { runtime.RaceReleaseMerge(unsafe.Pointer(&ioSync)) }

// raceWrote: the kernel read the first n bytes of p.
func raceWrote(p []byte, n int) {
	if n > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&p[0]), n)
	}
}

// raceWrotev: the kernel read the first n bytes of the buffers iov points at.
func raceWrotev(iov []unix.Iovec, n int) {
	for _, v := range iov {
		if n <= 0 {
			return
		}
		m := min(int(v.Len), n)
		if m > 0 {
			runtime.RaceReadRange(unsafe.Pointer(v.Base), m)
		}
		n -= m
	}
}
