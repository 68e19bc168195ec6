package netpoll

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"
)

// FuzzLinkBufferModel drives a LinkBuffer with a sequence of operations
// decoded from the input and checks every result against a plain model: the
// readable bytes and the pending bytes as two byte slices.
//
// Input layout: byte 0 picks LinkBufferCap (small values make messages span
// many nodes), byte 1 holds flags (bit 0: AlwaysNoCopyRead; bit 1: a lean
// buffer, as a connection's), then each operation is one opcode byte
// followed by its parameter bytes. Running out of input ends the sequence;
// the remaining bytes are then drained and the buffer must give its memory
// back: it may keep one small node, a lean buffer none.
func FuzzLinkBufferModel(f *testing.F) {
	// Seeds, one per theme, so that `go test` runs each path. Layout notes:
	// a size byte below 200 is itself mod 64; 200..239 take one more byte
	// (x4); 240 and up take two more and land around 4 KiB. A read size byte
	// c gives c*Len/251, and 252..255 ask for more than Len.
	f.Add([]byte{0, 0, fzMalloc, 10, fzFlush, fzNext, 251, fzRelease})
	f.Add([]byte{1, 0, fzWriteString, 30, fzWriteByte, 7, fzMalloc, 220, 100, fzFlush,
		fzPeek, 200, fzNext, 150, fzReadString, 251, fzRelease})
	f.Add([]byte{0, 0, fzWriteBinary, 250, 40, 5, fzMalloc, 40, fzWriteDirect, 20, 5, fzFlush,
		fzBytes, fzGetBytes, 0, fzGetBytes, 2, fzUntil, 3, fzNext, 251, fzRelease})
	f.Add([]byte{200, 1, fzMalloc, 220, 100, fzMallocAck, 120, fzFlush, fzReadBinary, 200, fzRelease,
		fzMalloc, 220, 90, fzFlush, fzReadBinary, 251, fzRelease})
	f.Add([]byte{3, 0, fzMalloc, 40, fzFlush, fzSlice, 120, fzSliceOp, 0, 1, 128, fzRelease,
		fzMalloc, 60, fzFlush, fzSlice, 251, fzSliceOp, 0, 0, 200, fzSliceOp, 1, 2, 255,
		fzSliceOp, 0, 3, 0})
	f.Add([]byte{7, 2, fzMalloc, 20, fzAppend, 10, 30, 100, 1, 12, fzWriteBuffer, 0, 50, 251, 0, 40,
		fzFlush, fzSkip, 100, fzReadByte, fzNext, 251, fzRelease})
	f.Add([]byte{4, 2, fzBook, 60, 200, fzReadString, 128, fzBook, 30, 255, fzNext, 251, fzRelease,
		fzBook, 10, 100, fzPeek, 251})
	f.Add([]byte{200, 1, fzWriteString, 245, 50, 50, fzMalloc, 63, fzWriteDirect, 20, 7,
		fzMallocAck, 200, fzWriteBinary, 241, 1, 2, fzFlush, fzSlice, 100, fzSliceOp, 0, 0, 128,
		fzReadBinary, 251, fzRelease})
	f.Add([]byte{1, 0, fzMalloc, 9, fzWriteDirect, 5, 9, fzWriteDirect, 3, 3, fzMallocAck, 0,
		fzMalloc, 5, fzWriteDirect, 4, 2, fzFlush, fzNext, 251, fzRelease})
	f.Add([]byte{0, 0, fzNext, 255, fzReadByte, fzUntil, 9, fzMalloc, 5, fzFlush, fzPeek, 253,
		fzSkip, 254, fzSlice, 255, fzReadString, 252, fzMallocAck, 255, fzWriteDirect, 3, 255})
	f.Add([]byte{3, 0, fzMalloc, 40, fzFlush, fzPeek, 200, fzMalloc, 20, fzGetBytes, 0, fzSlice, 150,
		fzReset, 30, fzWriteString, 10, fzAppendSlice, 0, fzFlush, fzNext, 251, fzRelease})
	f.Add([]byte{200, 0, fzMalloc, 10, fzFlush, fzSlice, 245, fzMalloc, 10, fzFlush, fzSliceOp, 0, 2, 255})
	// Append behind pending bytes: its readable bytes are read before the
	// Flush, around a WriteDirect and a MallocAck.
	f.Add([]byte{0, 0, fzMalloc, 5, fzAppend, 0, 20, 30, 0, 7, fzNext, 200, fzWriteDirect, 3, 2,
		fzMallocAck, 120, fzPeek, 251, fzNext, 251, fzRelease, fzFlush, fzNext, 251, fzRelease})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{data: data}
		saved, savedNoCopy := LinkBufferCap, noCopyRead.Load()
		defer func() { LinkBufferCap = saved; noCopyRead.Store(savedNoCopy) }()
		if c := in.u8(); c < 192 {
			LinkBufferCap = fuzzCaps[int(c)%len(fuzzCaps)]
		}
		flags := in.u8()
		noCopyRead.Store(flags&1 == 1)

		m := &lbModel{t: t, b: NewLinkBuffer(), lean: flags&2 == 2, rng: 0x9e3779b9 ^ uint32(len(data))}
		m.b.lean = m.lean
		defer m.cleanup()
		for ops := 0; ops < 400 && !in.done(); ops++ {
			m.step(in)
			m.checkLens()
			m.checkKept()
		}
		m.finish()
	})
}

// fuzzCaps are the lowered LinkBufferCap values: powers of two (the pool's
// sizes, so that a node can be exactly LinkBufferCap) and their neighbours.
var fuzzCaps = []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 100, 128, 256}

// Opcodes of FuzzLinkBufferModel; the opcode byte is taken modulo fzOps.
const (
	fzMalloc = iota
	fzMallocAck
	fzWriteString
	fzWriteBinary
	fzWriteByte
	fzWriteDirect
	fzAppend
	fzWriteBuffer
	fzFlush
	fzNext
	fzPeek
	fzSkip
	fzUntil
	fzReadString
	fzReadBinary
	fzReadByte
	fzSlice
	fzRelease
	fzBytes
	fzGetBytes
	fzSliceOp
	fzBook
	fzReset
	fzAppendSlice
	fzOps
)

type fuzzInput struct {
	data []byte
	pos  int
}

func (in *fuzzInput) done() bool { return in.pos >= len(in.data) }

func (in *fuzzInput) u8() byte {
	if in.done() {
		return 0
	}
	in.pos++
	return in.data[in.pos-1]
}

// size decodes a write size: mostly small, sometimes up to 1 KiB, and
// sometimes above BinaryInplaceThreshold.
func (in *fuzzInput) size() int {
	switch c := in.u8(); {
	case c < 200:
		return int(c % 64)
	case c < 240:
		return int(in.u8()) * 4
	default:
		return BinaryInplaceThreshold - 100 + int(in.u8())*24 + int(in.u8())
	}
}

// upTo decodes a read size in [0, limit] (exactly limit for 240..251), or
// limit+1..limit+4 (not enough) for the top few byte values.
func (in *fuzzInput) upTo(limit int) int {
	switch c := int(in.u8()); {
	case c >= 252:
		return limit + c - 251
	case c >= 240:
		return limit // all of it, often: that empties nodes
	default:
		return c * limit / 240
	}
}

func (m *lbModel) step(in *fuzzInput) {
	switch op := in.u8() % fzOps; op {
	case fzMalloc, fzMallocAck, fzWriteString, fzWriteBinary, fzWriteByte, fzWriteDirect, fzFlush, fzBook:
		m.stepWrite(op, in)
	case fzAppend, fzWriteBuffer:
		m.stepAppend(op == fzAppend, in)
	case fzNext, fzPeek, fzSkip, fzReadString, fzReadBinary, fzReadByte, fzUntil:
		if op != fzPeek {
			m.consuming()
		}
		m.stepRead(op, in)
	default:
		m.stepOther(op, in)
	}
}

func (m *lbModel) stepWrite(op byte, in *fuzzInput) {
	switch op {
	case fzMalloc:
		n := in.size()
		m.log("Malloc(%d)", n)
		p, err := m.b.Malloc(n)
		m.noErr(err, "Malloc")
		if len(p) != n {
			m.fatalf("Malloc(%d) gave %d bytes", n, len(p))
		}
		m.tight(p, "Malloc")
		m.fill(p)
		m.stage(p)
	case fzMallocAck:
		n := in.upTo(len(m.pending))
		m.log("MallocAck(%d) of %d", n, len(m.pending))
		err := m.b.MallocAck(n)
		if n > len(m.pending) {
			if err == nil {
				m.fatalf("MallocAck(%d) over %d pending: no error", n, len(m.pending))
			}
			return
		}
		m.noErr(err, "MallocAck")
		m.ackPending(n)
	case fzWriteString, fzWriteBinary, fzWriteByte:
		m.stepWriteBytes(op, in)
	case fzWriteDirect:
		m.stepWriteDirect(in)
	case fzFlush:
		m.log("Flush")
		m.noErr(m.b.Flush(), "Flush")
		m.flushAll()
	case fzBook:
		m.stepBook(in)
	}
}

func (m *lbModel) stepWriteBytes(op byte, in *fuzzInput) {
	if op == fzWriteByte {
		c := in.u8()
		m.log("WriteByte(%d)", c)
		m.noErr(m.b.WriteByte(c), "WriteByte")
		m.stage([]byte{c})
		return
	}
	p := m.fresh(in.size())
	var n int
	var err error
	if op == fzWriteString {
		m.log("WriteString(%d)", len(p))
		n, err = m.b.WriteString(string(p))
	} else {
		m.log("WriteBinary(%d)", len(p))
		n, err = m.b.WriteBinary(p)
	}
	m.noErr(err, "WriteString/WriteBinary")
	if n != len(p) {
		m.fatalf("wrote %d of %d", n, len(p))
	}
	m.stage(p)
}

// stepWriteDirect splices fresh bytes before the last r pending bytes
// (docs/contract.md C4.5), r anywhere in [0, MallocLen] (often small: the tail node), or
// checks that r beyond every pending byte is refused and changes nothing.
func (m *lbModel) stepWriteDirect(in *fuzzInput) {
	x := m.fresh(in.size())
	c := int(in.u8())
	if c == 255 {
		r := len(m.pending) + 1 + len(x)%4
		m.log("WriteDirect(%d, %d) over %d pending", len(x), r, len(m.pending))
		err := m.b.WriteDirect(x, r)
		if len(x) > 0 && err == nil {
			m.fatalf("WriteDirect(%d, %d) with %d pending: no error", len(x), r, len(m.pending))
		}
		return
	}
	r := min(c%16, len(m.pending))
	if c >= 100 {
		r = (c - 100) * len(m.pending) / 154
	}
	m.log("WriteDirect(%d, %d) of %d", len(x), r, len(m.pending))
	m.noErr(m.b.WriteDirect(x, r), "WriteDirect")
	if len(x) == 0 {
		return
	}
	m.insertPending(x, r)
}

// stepBook is the poller's path: book, fill, bookAck, or (odd c) a small
// read copied in by appendRead. The owner writes nothing meanwhile, so it
// runs only with nothing pending.
func (m *lbModel) stepBook(in *fuzzInput) {
	size := max(1, in.size())
	c := int(in.u8())
	if len(m.pending) > 0 {
		return
	}
	if c&1 == 1 {
		p := m.fresh(1 + c*size/255)
		m.log("appendRead(%d)", len(p))
		m.noErr(m.b.appendRead(p), "appendRead")
		m.publish(p)
		return
	}
	m.log("book(%d)", size)
	p := m.b.book(size)
	if p == nil || len(p) < max(size/2, 1) {
		m.fatalf("book(%d) gave %d bytes", size, len(p))
	}
	m.tight(p, "book")
	if m.b.book(size) != nil {
		m.fatalf("book while booked gave memory")
	}
	k := c * len(p) / 255
	m.fill(p[:k])
	m.log("bookAck(%d) of %d", k, len(p))
	m.noErr(m.b.bookAck(k), "bookAck")
	m.publish(p[:k])
}

// stepAppend builds another buffer with readable, partly consumed and
// pending bytes, and moves it over with Append or WriteBuffer (docs/contract.md C4.6).
func (m *lbModel) stepAppend(viaAppend bool, in *fuzzInput) {
	w := NewLinkBuffer(in.size())
	first := m.fresh(in.size())
	_, err := w.WriteBinary(first)
	m.noErr(err, "other.WriteBinary")
	m.noErr(w.Flush(), "other.Flush")
	skip := in.upTo(len(first))
	skip = min(skip, len(first))
	m.noErr(w.Skip(skip), "other.Skip")
	if in.u8()&1 == 1 {
		m.noErr(w.Release(), "other.Release")
	}
	second, err := w.Malloc(in.size())
	m.noErr(err, "other.Malloc")
	m.fill(second)
	m.log("Append=%v(%d readable, %d pending)", viaAppend, len(first)-skip, len(second))
	if viaAppend {
		err = m.b.Append(w)
	} else {
		err = m.b.WriteBuffer(w)
	}
	m.noErr(err, "Append/WriteBuffer")
	m.publish(first[skip:])
	m.stage(second)
	if w.Len() != 0 || w.MallocLen() != 0 {
		m.fatalf("appended buffer still has %d readable, %d pending", w.Len(), w.MallocLen())
	}
	if _, err := w.Malloc(1); !errors.Is(err, ErrConnClosed) {
		m.fatalf("appended buffer: Malloc gave %v, want ErrConnClosed", err)
	}
}

func (m *lbModel) stepRead(op byte, in *fuzzInput) {
	switch op {
	case fzNext:
		n := in.upTo(len(m.readable))
		m.log("Next(%d) of %d", n, len(m.readable))
		p, err := m.b.Next(n)
		if n > len(m.readable) {
			m.notEnough(err, "next", n)
			return
		}
		m.noErr(err, "Next")
		m.tight(p, "Next")
		want := m.consume(n)
		m.same(p, want, "Next")
		m.nexts = append(m.nexts, held{got: p, want: want, what: "Next"})
	case fzPeek:
		n := in.upTo(len(m.readable))
		m.log("Peek(%d) of %d", n, len(m.readable))
		p, err := m.b.Peek(n)
		if n > len(m.readable) {
			m.notEnough(err, "peek", n)
			return
		}
		m.noErr(err, "Peek")
		m.tight(p, "Peek")
		m.same(p, m.readable[:n], "Peek")
		m.peeks = append(m.peeks, held{got: p, want: append([]byte(nil), p...), what: "Peek"})
	case fzSkip:
		n := in.upTo(len(m.readable))
		m.log("Skip(%d) of %d", n, len(m.readable))
		err := m.b.Skip(n)
		if n > len(m.readable) {
			m.notEnough(err, "skip", n)
			return
		}
		m.noErr(err, "Skip")
		m.consume(n)
	case fzReadString, fzReadBinary:
		m.stepReadOwned(op == fzReadString, in)
	case fzReadByte:
		m.log("ReadByte of %d", len(m.readable))
		c, err := m.b.ReadByte()
		if len(m.readable) == 0 {
			if err == nil || err.Error() != "link buffer read byte is empty" {
				m.fatalf("ReadByte on empty: %v", err)
			}
			return
		}
		m.noErr(err, "ReadByte")
		if want := m.consume(1)[0]; c != want {
			m.fatalf("ReadByte %d, want %d", c, want)
		}
	case fzUntil:
		m.stepUntil(in)
	}
}

func (m *lbModel) stepReadOwned(asString bool, in *fuzzInput) {
	n := in.upTo(len(m.readable))
	if asString {
		m.log("ReadString(%d) of %d", n, len(m.readable))
		s, err := m.b.ReadString(n)
		if n > len(m.readable) {
			m.notEnough(err, "read string", n)
			return
		}
		m.noErr(err, "ReadString")
		want := m.consume(n)
		m.same([]byte(s), want, "ReadString")
		if len(s) > 0 {
			// Keep the string's own memory to see that it never changes.
			m.keepOwned(unsafe.Slice(unsafe.StringData(s), len(s)), want, "ReadString")
		}
		return
	}
	m.log("ReadBinary(%d) of %d", n, len(m.readable))
	p, err := m.b.ReadBinary(n)
	if n > len(m.readable) {
		m.notEnough(err, "read binary", n)
		return
	}
	m.noErr(err, "ReadBinary")
	m.tight(p, "ReadBinary")
	want := m.consume(n)
	m.same(p, want, "ReadBinary")
	m.keepOwned(p, want, "ReadBinary")
}

func (m *lbModel) stepUntil(in *fuzzInput) {
	c := int(in.u8())
	delim := byte(c)
	if len(m.readable) > 0 && c < 200 {
		delim = m.readable[c*len(m.readable)/200]
	}
	m.log("Until(%d) of %d", delim, len(m.readable))
	p, err := m.b.Until(delim)
	i := bytes.IndexByte(m.readable, delim)
	if i < 0 {
		if err == nil || err.Error() != "link buffer read slice cannot find delim" {
			m.fatalf("Until without delim: %v", err)
		}
		return
	}
	m.noErr(err, "Until")
	m.tight(p, "Until")
	want := m.consume(i + 1)
	m.same(p, want, "Until")
	m.keepOwned(p, want, "Until")
}

func (m *lbModel) stepOther(op byte, in *fuzzInput) {
	switch op {
	case fzSlice:
		n := in.upTo(len(m.readable))
		m.log("Slice(%d) of %d", n, len(m.readable))
		m.consuming()
		m.checkHeld(m.nexts, "before the Release of Slice")
		r, err := m.b.Slice(n)
		if n > len(m.readable) {
			m.notEnough(err, "readv", n)
			return
		}
		m.noErr(err, "Slice")
		if n > 0 {
			m.nexts = m.nexts[:0]
		}
		m.addSlice(r, m.consume(n))
	case fzRelease:
		m.log("Release")
		m.consuming()
		m.checkHeld(m.nexts, "before Release")
		m.noErr(m.b.Release(), "Release")
		m.nexts = m.nexts[:0]
		m.checkHeld(m.owned, "after Release")
		m.checkSlices("after Release")
	case fzBytes:
		m.log("Bytes")
		p := m.b.Bytes()
		m.tight(p, "Bytes")
		m.same(p, m.readable, "Bytes")
		m.nexts = append(m.nexts, held{got: p, want: append([]byte(nil), p...), what: "Bytes"})
	case fzGetBytes:
		m.stepGetBytes(in)
	case fzSliceOp:
		m.stepSliceOp(in)
	case fzReset:
		m.stepReset(in)
	case fzAppendSlice:
		m.stepAppendSlice(in)
	}
}

func (m *lbModel) stepGetBytes(in *fuzzInput) {
	k := int(in.u8() % 8)
	m.log("GetBytes(%d)", k)
	segs := m.b.GetBytes(make([][]byte, k))
	if k > 0 && len(segs) > k {
		m.fatalf("GetBytes(%d) gave %d segments", k, len(segs))
	}
	var all []byte
	for _, s := range segs {
		m.tight(s, "GetBytes")
		if len(s) == 0 {
			m.fatalf("GetBytes gave an empty segment")
		}
		all = append(all, s...)
		m.nexts = append(m.nexts, held{got: s, want: append([]byte(nil), s...), what: "GetBytes segment"})
	}
	if k == 0 || len(segs) < k {
		m.same(all, m.readable, "GetBytes (all)")
	} else if !bytes.HasPrefix(m.readable, all) {
		m.fatalf("GetBytes(%d) is not a prefix of the readable bytes", k)
	}
}

// stepReset Closes the buffer mid-sequence (every method must then fail
// with ErrConnClosed) and goes on with a new one. Kept Slices and owned
// results must survive.
func (m *lbModel) stepReset(in *fuzzInput) {
	size := in.size()
	m.log("Close, NewLinkBuffer(%d)", size)
	m.consuming()
	m.checkHeld(m.nexts, "before Close")
	m.nexts = m.nexts[:0]
	m.noErr(m.b.Close(), "Close")
	if _, err := m.b.Malloc(1); !errors.Is(err, ErrConnClosed) {
		m.fatalf("Malloc after Close: %v", err)
	}
	if _, err := m.b.Next(1); !errors.Is(err, ErrConnClosed) {
		m.fatalf("Next after Close: %v", err)
	}
	if p, err := m.b.Next(0); p != nil || err != nil {
		m.fatalf("Next(0) after Close: %v, %v; want nil, nil", p, err)
	}
	if m.b.Len() != 0 || m.b.MallocLen() != 0 || m.b.retained() != 0 {
		m.fatalf("after Close: Len %d MallocLen %d retained %d", m.b.Len(), m.b.MallocLen(), m.b.retained())
	}
	m.checkSlices("after the parent's Close")
	m.checkHeld(m.owned, "after Close")
	m.b = NewLinkBuffer(size)
	m.b.lean = m.lean
	m.readable, m.pending, m.runs = nil, nil, nil
}

// stepAppendSlice forwards a kept Slice result into the buffer with Append,
// as a proxy forwards a payload (docs/contract.md C2.8 with C4.6).
func (m *lbModel) stepAppendSlice(in *fuzzInput) {
	idx := int(in.u8())
	if len(m.slices) == 0 {
		return
	}
	i := idx % len(m.slices)
	s := m.slices[i]
	m.log("Append(slice #%d of %d)", i, len(s.want))
	m.noErr(m.b.Append(s.r), "Append(slice)")
	m.publish(s.want)
	m.slices = append(m.slices[:i], m.slices[i+1:]...)
}

// stepSliceOp reads from, slices or closes one kept Slice result.
func (m *lbModel) stepSliceOp(in *fuzzInput) {
	idx, act, c := int(in.u8()), in.u8()%4, int(in.u8())
	if len(m.slices) == 0 {
		return
	}
	i := idx % len(m.slices)
	s := &m.slices[i]
	n := c * len(s.want) / 255
	m.log("slice #%d act %d n %d of %d", i, act, n, len(s.want))
	switch act {
	case 0: // Next, then Release
		p, err := s.r.Next(n)
		m.noErr(err, "slice.Next")
		m.tight(p, "slice.Next")
		m.same(p, s.want[:n], "slice.Next")
		s.want = s.want[n:]
		m.noErr(s.r.Release(), "slice.Release")
	case 1: // slice of a slice
		r, err := s.r.Slice(n)
		m.noErr(err, "slice.Slice")
		want := s.want[:n]
		s.want = s.want[n:]
		m.addSlice(r, want)
	case 2: // ReadString
		str, err := s.r.ReadString(n)
		m.noErr(err, "slice.ReadString")
		m.same([]byte(str), s.want[:n], "slice.ReadString")
		s.want = s.want[n:]
	default: // Close
		m.noErr(s.r.Close(), "slice.Close")
		m.slices = append(m.slices[:i], m.slices[i+1:]...)
	}
}
