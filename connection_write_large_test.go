//go:build darwin || freebsd || linux

package netpoll

import (
	"errors"
	"hash/crc32"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Writes larger than a buffer node (1 GiB) and than one writev can carry
// (2 GiB): docs/contract.md C4.1, C5.2, C16.19.

// docs/contract.md C4.1, C5.2, C16.19: a Malloc larger than the largest
// buffer node (1 GiB) is refused with a size error; a Write of as much (and,
// in the soak form, WriteBinary and Flush of the same bytes, by reference)
// either goes out or fails with a size error. None may report the open
// connection as closed, and it stays active. The memory is a read-only
// anonymous mapping: nothing is touched unless the bytes are really sent.
func TestConnWriteOver1GiB(t *testing.T) {
	checkLeaks(t)
	const size = 1<<30 + 4096
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Skip(err)
	}
	defer unix.Munmap(mem)
	r, w := GetSysFdPairs()
	c, err := NewFDConnection(w)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	drained := make(chan int64, 1)
	go func() { // discard whatever arrives
		f := os.NewFile(uintptr(r), "peer")
		defer f.Close()
		_ = unix.SetNonblock(r, false)
		buf := make([]byte, 4<<20)
		var n int64
		for {
			m, err := f.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		drained <- n
	}()
	type op struct {
		name    string
		refused bool // the size must be refused
		call    func() error
	}
	ops := []op{
		{"Write", false, func() error { _, err := c.Write(mem); return err }},
		{"Malloc", true, func() error { _, err := c.Writer().Malloc(size); return err }},
	}
	if soakMode() { // another GiB through the socketpair
		ops = append(ops, op{"WriteBinary+Flush", false, func() error {
			if _, err := c.Writer().WriteBinary(mem); err != nil {
				return err
			}
			return c.Writer().Flush()
		}})
	}
	for _, op := range ops {
		err := withinFor(t, 3*longWait, op.name, op.call)
		if op.refused && err == nil {
			t.Errorf("%s of %d bytes succeeded, want a size error", op.name, size)
		}
		if err != nil && (errors.Is(err, ErrConnClosed) || !c.IsActive()) {
			t.Errorf("%s of %d bytes on an open connection fails with %q, an ErrConnClosed (connection_rw.go Write maps every Malloc error to closedWrite)", op.name, size, err)
		}
	}
	c.Close()
	recv(t, drained, "the reader of the peer end")
}

// Output of more than 2 GiB queued by reference (one 64 MiB slice written 40
// times) goes out whole: the send path caps each writev below the kernel's
// limit instead of failing.
func TestConnFlushOver2GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("2.5 GiB through a socketpair")
	}
	checkLeaks(t)
	const size, times = 64 << 20, 40
	r, w := GetSysFdPairs()
	c, err := NewFDConnection(w)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	block := bigBytes(size, 7)
	one := crc32.ChecksumIEEE(block)
	type result struct {
		n   int64
		bad int
		err error
	}
	done := make(chan result, 1)
	go func() {
		f := os.NewFile(uintptr(r), "peer") // owns r from here on
		defer f.Close()
		_ = unix.SetNonblock(r, false)
		var res result
		buf := make([]byte, size)
		for i := 0; i < times; i++ {
			m, err := io.ReadFull(f, buf)
			res.n += int64(m)
			if err != nil {
				res.err = err
				break
			}
			if crc32.ChecksumIEEE(buf) != one {
				res.bad++
			}
		}
		done <- res
	}()
	for i := 0; i < times; i++ {
		if _, err = c.Writer().WriteBinary(block); err != nil {
			t.Fatal(err)
		}
	}
	if err = c.Writer().Flush(); err != nil {
		t.Fatalf("Flush of %d GiB: %v", size*times>>30, err)
	}
	res := withinFor(t, 3*longWait, "the peer's read", func() result { return <-done })
	if res.err != nil || res.n != size*times || res.bad != 0 {
		t.Fatalf("peer read %d of %d bytes, %d bad blocks, %v", res.n, size*times, res.bad, res.err)
	}

}
