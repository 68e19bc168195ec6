package netpoll

// The model of FuzzLinkBufferModel: the readable and pending bytes as plain
// slices, the results the buffer handed out with the bytes they must keep
// showing, and the checks run after each operation and at the end.

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// held is a slice the buffer returned and the bytes it must still show.
type held struct {
	got, want []byte
	what      string
}

// heldSlice is a Slice result and the bytes it must still yield.
type heldSlice struct {
	r    *LinkBuffer
	want []byte
}

type lbModel struct {
	t        *testing.T
	b        *LinkBuffer
	lean     bool        // a connection's buffer: gives back even a small node
	readable []byte      // in the order reads take them
	pending  []byte      // in the order MallocAck and WriteDirect count them
	runs     []run       // how the two interleave in place (see run)
	nexts    []held      // Next, GetBytes, Bytes results: intact until Release
	peeks    []held      // Peek results: intact until the next consuming read
	owned    []held      // ReadString, ReadBinary, Until results: intact forever
	slices   []heldSlice // Slice results: intact after the parent's Release and Close
	rng      uint32
	trace    []string
}

func (m *lbModel) fatalf(format string, args ...any) {
	m.t.Helper()
	tail := m.trace
	if len(tail) > 40 {
		tail = tail[len(tail)-40:]
	}
	m.t.Fatalf("%s\nLinkBufferCap=%d noCopyRead=%v; last ops:\n  %s",
		fmt.Sprintf(format, args...), LinkBufferCap, noCopyRead.Load(), strings.Join(tail, "\n  "))
}

func (m *lbModel) log(format string, args ...any) {
	m.trace = append(m.trace, fmt.Sprintf(format, args...))
}

// fresh returns n new bytes of pseudo-random content.
func (m *lbModel) fresh(n int) []byte {
	p := make([]byte, n)
	m.fill(p)
	return p
}

func (m *lbModel) fill(p []byte) {
	for i := range p {
		m.rng ^= m.rng << 13
		m.rng ^= m.rng >> 17
		m.rng ^= m.rng << 5
		p[i] = byte(m.rng)
	}
}

func (m *lbModel) noErr(err error, op string) {
	m.t.Helper()
	if err != nil {
		m.fatalf("%s: unexpected error %v", op, err)
	}
}

// tight checks cap == len, so that append never writes into the buffer.
func (m *lbModel) tight(p []byte, op string) {
	m.t.Helper()
	if cap(p) != len(p) {
		m.fatalf("%s: cap %d != len %d", op, cap(p), len(p))
	}
}

func (m *lbModel) same(got, want []byte, op string) {
	m.t.Helper()
	if !bytes.Equal(got, want) {
		m.fatalf("%s: got %d bytes %x..., want %d bytes %x...", op, len(got), head(got), len(want), head(want))
	}
}

func head(p []byte) []byte {
	if len(p) > 16 {
		return p[:16]
	}
	return p
}

func (m *lbModel) checkLens() {
	m.t.Helper()
	ready, staged := 0, 0
	for _, r := range m.runs {
		if r.ready {
			ready += r.n
		} else {
			staged += r.n
		}
	}
	if ready != len(m.readable) || staged != len(m.pending) {
		m.fatalf("model runs count %d readable %d pending, model holds %d %d", ready, staged, len(m.readable), len(m.pending))
	}
	if m.b.Len() != len(m.readable) || m.b.MallocLen() != len(m.pending) {
		m.fatalf("Len %d MallocLen %d, model %d %d", m.b.Len(), m.b.MallocLen(), len(m.readable), len(m.pending))
	}
	if m.b.IsEmpty() != (len(m.readable) == 0) {
		m.fatalf("IsEmpty %v with %d readable", m.b.IsEmpty(), len(m.readable))
	}
}

func (m *lbModel) checkHeld(list []held, when string) {
	m.t.Helper()
	for i, h := range list {
		if !bytes.Equal(h.got, h.want) {
			m.fatalf("%s #%d changed %s", h.what, i, when)
		}
	}
}

// consume removes n readable bytes from the model and returns them.
func (m *lbModel) consume(n int) []byte {
	p := append([]byte(nil), m.readable[:n]...)
	m.readable = m.readable[n:]
	for i := 0; n > 0; i++ {
		if r := &m.runs[i]; r.ready {
			k := min(n, r.n)
			r.n -= k
			n -= k
		}
	}
	m.tidyRuns()
	return p
}

// run is a stretch of the buffer's bytes in place order, all readable or
// all pending. Append puts another buffer's readable bytes behind this
// buffer's pending ones: reads take them at once, skipping the pending
// bytes, and Flush publishes the pending bytes where they lie.
type run struct {
	ready bool
	n     int
}

// addRun appends n bytes of a kind to the runs.
func (m *lbModel) addRun(ready bool, n int) {
	m.runs = append(m.runs, run{ready: ready, n: n})
	m.tidyRuns()
}

// tidyRuns drops empty runs and merges neighbours of a kind.
func (m *lbModel) tidyRuns() {
	out := m.runs[:0]
	for _, r := range m.runs {
		switch {
		case r.n == 0:
		case len(out) > 0 && out[len(out)-1].ready == r.ready:
			out[len(out)-1].n += r.n
		default:
			out = append(out, r)
		}
	}
	m.runs = out
}

// stage appends pending bytes, as Malloc and the writes do.
func (m *lbModel) stage(p []byte) {
	m.pending = append(m.pending, p...)
	m.addRun(false, len(p))
}

// publish appends readable bytes, as the poller's reads do, and Append for
// the readable bytes of the buffer it takes.
func (m *lbModel) publish(p []byte) {
	m.readable = append(m.readable, p...)
	m.addRun(true, len(p))
}

// flushAll makes every pending byte readable where it lies.
func (m *lbModel) flushAll() {
	all := make([]byte, 0, len(m.readable)+len(m.pending))
	rd, pd := m.readable, m.pending
	for _, r := range m.runs {
		if r.ready {
			all, rd = append(all, rd[:r.n]...), rd[r.n:]
		} else {
			all, pd = append(all, pd[:r.n]...), pd[r.n:]
		}
	}
	m.readable, m.pending = all, m.pending[:0]
	m.runs = m.runs[:0]
	m.addRun(true, len(all))
}

// ackPending keeps the first n pending bytes; readable bytes stay.
func (m *lbModel) ackPending(n int) {
	m.pending = m.pending[:n]
	for i := range m.runs {
		if r := &m.runs[i]; !r.ready {
			r.n = min(r.n, n)
			n -= r.n
		}
	}
	m.tidyRuns()
}

// insertPending splices x in front of the last r pending bytes: right after
// the pending byte before it, or right before the first pending byte when r
// is all of them, so that it joins that byte's run; with nothing pending it
// goes last.
func (m *lbModel) insertPending(x []byte, r int) {
	cut := len(m.pending) - r
	np := make([]byte, 0, len(m.pending)+len(x))
	m.pending = append(append(append(np, m.pending[:cut]...), x...), m.pending[cut:]...)
	seen := 0
	for i := range m.runs {
		if rn := &m.runs[i]; !rn.ready {
			if seen+rn.n >= cut {
				rn.n += len(x)
				return
			}
			seen += rn.n
		}
	}
	m.addRun(false, len(x))
}

// notEnough checks the docs/contract.md C3.1 error of a read of n > Len bytes.
func (m *lbModel) notEnough(err error, op string, n int) {
	m.t.Helper()
	if err == nil {
		m.fatalf("%s(%d) with %d readable: no error", op, n, len(m.readable))
	}
	if want := fmt.Sprintf("link buffer %s[%d] not enough", op, n); err.Error() != want {
		m.fatalf("%s(%d): error %q, want %q", op, n, err, want)
	}
}

func (m *lbModel) keepOwned(got, want []byte, what string) {
	if len(m.owned) >= 64 {
		m.owned = m.owned[1:]
	}
	m.owned = append(m.owned, held{got: got, want: want, what: what})
}

// consuming checks, before a consuming read or a Release, that the Peek
// results are intact; they may be reused from then on.
func (m *lbModel) consuming() {
	m.t.Helper()
	m.checkHeld(m.peeks, "before a consuming read")
	m.peeks = m.peeks[:0]
}

// checkKept checks, after every operation, everything handed out that must
// still be intact: Peek results (until a consuming read), Next, Bytes and
// GetBytes results (until Release), owned results and Slices (for good).
func (m *lbModel) checkKept() {
	m.t.Helper()
	m.checkHeld(m.peeks, "before a consuming read")
	m.checkHeld(m.nexts, "before Release")
	m.checkHeld(m.owned, "")
	m.checkSlices("")
}

func (m *lbModel) addSlice(r Reader, want []byte) {
	lb, ok := r.(*LinkBuffer)
	if !ok {
		m.fatalf("Slice returned %T, not *LinkBuffer", r)
	}
	if lb.Len() != len(want) {
		m.fatalf("Slice of %d bytes has Len %d", len(want), lb.Len())
	}
	if len(m.slices) >= 16 { // bound the work: check and drop the oldest
		m.checkSlices("")
		m.noErr(m.slices[0].r.Close(), "slice.Close")
		m.slices = m.slices[1:]
	}
	m.slices = append(m.slices, heldSlice{r: lb, want: want})
}

// checkSlices reads every kept Slice through Bytes, without consuming.
func (m *lbModel) checkSlices(when string) {
	m.t.Helper()
	for i, s := range m.slices {
		if got := s.r.Bytes(); !bytes.Equal(got, s.want) || s.r.Len() != len(s.want) {
			m.fatalf("Slice #%d changed %s: %d bytes, want %d", i, when, len(got), len(s.want))
		}
	}
}

// finish drains the buffer and checks the give-back: with nothing readable
// and nothing pending, Release leaves at most one small node (none in a lean
// buffer). Then it writes over whatever memory the buffer reuses, and
// checks that nothing handed out for good (owned results, Slices) changed:
// memory still referenced must never be reused. Last, Close, after which
// the Slices must still be intact.
func (m *lbModel) finish() {
	m.log("finish")
	m.consuming()
	m.noErr(m.b.MallocAck(0), "MallocAck(0)")
	m.ackPending(0)
	m.noErr(m.b.Skip(len(m.readable)), "Skip(all)")
	m.consume(len(m.readable))
	m.noErr(m.b.Release(), "Release")
	m.nexts = nil
	m.checkLens()
	if r := m.b.retained(); r > idleRetained(m.b) {
		m.fatalf("an empty buffer retains %d bytes after Release (at most %d)", r, idleRetained(m.b))
	}
	for _, n := range []int{1, 15, 64, 500, BinaryInplaceThreshold} {
		p, err := m.b.Malloc(n)
		m.noErr(err, "Malloc")
		m.fill(p)
		m.noErr(m.b.Flush(), "Flush")
	}
	m.checkHeld(m.owned, "when the buffer is written again")
	m.checkSlices("when the parent is written again")
	m.noErr(m.b.Close(), "Close")
	m.checkSlices("after the parent's Close")
	m.checkHeld(m.owned, "after Close")
}

func (m *lbModel) cleanup() {
	for _, s := range m.slices {
		_ = s.r.Close()
	}
	m.slices = nil
	_ = m.b.Close()
}
