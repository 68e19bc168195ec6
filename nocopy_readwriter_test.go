package netpoll

import (
	"bytes"
	"errors"
	"io"
	"sort"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// Tests of the adapters between the nocopy Reader/Writer and io: docs/contract.md C13.

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	data  []byte
	n     int
	reads int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	m := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[m:]
	return m, nil
}

// docs/contract.md C13.1: NewReader over a bytes.Reader: every read gets its bytes, and the
// end of the stream is an error matching ErrEOF (and so ErrConnClosed), not
// io.EOF.
func TestNewReaderBytesReader(t *testing.T) {
	data := pattern(10000, 1)
	r := NewReader(bytes.NewReader(data))
	p, err := r.Peek(5000)
	require.NoError(t, err)
	require.Equal(t, data[:5000], p)
	p, err = r.Next(5000)
	require.NoError(t, err)
	require.Equal(t, data[:5000], p)
	require.Equal(t, len(p), cap(p))
	c, err := r.ReadByte()
	require.NoError(t, err)
	require.Equal(t, data[5000], c)
	require.NoError(t, r.Skip(999))
	s, err := r.ReadString(1000)
	require.NoError(t, err)
	require.Equal(t, string(data[6000:7000]), s)
	b, err := r.ReadBinary(1000)
	require.NoError(t, err)
	require.Equal(t, data[7000:8000], b)
	sl, err := r.Slice(1000)
	require.NoError(t, err)
	sp, err := sl.Next(1000)
	require.NoError(t, err)
	require.Equal(t, data[8000:9000], sp)
	require.NoError(t, sl.Release())
	require.NoError(t, r.Release())

	_, err = r.Next(1001)
	require.True(t, errors.Is(err, ErrEOF), "reading past the end: %v", err)
	require.True(t, errors.Is(err, ErrConnClosed))
	require.False(t, errors.Is(err, io.EOF), "C1.4: ErrEOF does not match io.EOF")
	require.Equal(t, 1000, r.Len(), "a failed read consumed bytes")
	p, err = r.Next(1000)
	require.NoError(t, err, "buffered bytes stay readable after the end")
	require.Equal(t, data[9000:], p)
	_, err = r.ReadByte()
	require.True(t, errors.Is(err, ErrEOF))
	_, err = r.Peek(1)
	require.True(t, errors.Is(err, ErrEOF))
	require.True(t, errors.Is(r.Skip(1), ErrEOF))
	_, err = r.ReadString(1)
	require.True(t, errors.Is(err, ErrEOF))
	_, err = r.ReadBinary(1)
	require.True(t, errors.Is(err, ErrEOF))
	_, err = r.Slice(1)
	require.True(t, errors.Is(err, ErrEOF))
}

// docs/contract.md C13.1: a reader that hands out a few bytes per call: a read blocks
// (pulls) until all the bytes it needs have arrived.
func TestNewReaderSmallChunks(t *testing.T) {
	data := pattern(20000, 2)
	src := &chunkReader{data: data, n: 3}
	r := NewReader(src)
	p, err := r.Next(10000)
	require.NoError(t, err)
	require.Equal(t, data[:10000], p)
	require.Greater(t, src.reads, 3000)
	s, err := r.ReadString(10000)
	require.NoError(t, err)
	require.Equal(t, string(data[10000:]), s)
	require.NoError(t, r.Release())
	_, err = r.ReadByte()
	require.True(t, errors.Is(err, ErrEOF))

	// iotest's one-byte reader, and a reader that returns data with io.EOF.
	r = NewReader(iotest.OneByteReader(bytes.NewReader([]byte("abc"))))
	s, err = r.ReadString(3)
	require.NoError(t, err)
	require.Equal(t, "abc", s)
	r = NewReader(iotest.DataErrReader(bytes.NewReader([]byte("xyz"))))
	s, err = r.ReadString(3)
	require.NoError(t, err, "bytes that come with io.EOF are still delivered")
	require.Equal(t, "xyz", s)
	_, err = r.Next(1)
	require.True(t, errors.Is(err, ErrEOF))
}

// docs/contract.md C13.1: Until searches only what is buffered; it does not pull.
func TestNewReaderUntil(t *testing.T) {
	r := NewReader(bytes.NewReader([]byte("line one\nline two\n")))
	_, err := r.Until('\n')
	require.Error(t, err, "Until pulled from the reader")
	_, err = r.Peek(1) // pulls a chunk
	require.NoError(t, err)
	line, err := r.Until('\n')
	require.NoError(t, err)
	require.Equal(t, "line one\n", string(line))
	line, err = r.Until('\n')
	require.NoError(t, err)
	require.Equal(t, "line two\n", string(line))
}

// docs/contract.md C13.1: other errors of the wrapped reader come back as they are, and
// stick; a reader that makes no progress gives an error instead of spinning.
func TestNewReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(iotest.ErrReader(boom))
	_, err := r.Next(1)
	require.ErrorIs(t, err, boom)
	_, err = r.ReadByte()
	require.ErrorIs(t, err, boom)

	r = NewReader(zeroReader{})
	_, err = r.Next(1)
	require.Error(t, err)

	r = NewReader(nil)
	_, err = r.Next(1)
	require.True(t, errors.Is(err, ErrEOF))
}

// zeroReader returns (0, nil) forever.
type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// recordWriter records each Write call, and writes at most limit bytes of it
// when limit > 0.
type recordWriter struct {
	calls [][]byte
	limit int
	err   error
}

func (w *recordWriter) Write(p []byte) (int, error) {
	w.calls = append(w.calls, append([]byte(nil), p...))
	if w.limit > 0 && len(p) > w.limit {
		return w.limit, w.err
	}
	return len(p), w.err
}

// docs/contract.md C13.2: NewWriter stages everything and Flush writes it with one Write.
func TestNewWriterFlushOnce(t *testing.T) {
	setLinkBufferCap(t, 8) // the staged bytes span nodes
	rec := &recordWriter{}
	w := NewWriter(rec)
	p, err := w.Malloc(5)
	require.NoError(t, err)
	copy(p, "hello")
	_, err = w.WriteString(", ")
	require.NoError(t, err)
	_, err = w.WriteBinary([]byte("nocopy "))
	require.NoError(t, err)
	require.NoError(t, w.WriteByte('w'))
	big := pattern(BinaryInplaceThreshold+1, 4)
	_, err = w.WriteBinary(big)
	require.NoError(t, err)
	require.NoError(t, w.WriteDirect([]byte("!"), 0))
	require.Equal(t, 5+2+7+1+len(big)+1, w.MallocLen())
	require.Empty(t, rec.calls, "written before Flush")

	require.NoError(t, w.Flush())
	require.Len(t, rec.calls, 1)
	require.Equal(t, "hello, nocopy w"+string(big)+"!", string(rec.calls[0]))
	require.Zero(t, w.MallocLen())
	require.NoError(t, w.Flush())
	require.Len(t, rec.calls, 1, "an empty Flush wrote")

	_, err = w.WriteString("dropped")
	require.NoError(t, err)
	require.NoError(t, w.MallocAck(0))
	_, err = w.WriteString("second")
	require.NoError(t, err)
	require.NoError(t, w.Flush())
	require.Len(t, rec.calls, 2)
	require.Equal(t, "second", string(rec.calls[1]))

	// Append moves a LinkBuffer in; anything else is refused.
	lb := NewLinkBuffer()
	_, err = lb.WriteString("appended")
	require.NoError(t, err)
	require.NoError(t, w.Append(lb))
	require.EqualError(t, w.Append(NewWriter(rec)), "unsupported writer which is not LinkBuffer")
	require.NoError(t, w.Flush())
	require.Equal(t, "appended", string(rec.calls[2]))
}

// docs/contract.md C13.2: a short write is not retried: Flush fails with one Write, and
// what was not written goes out with the next Flush. A Write error comes
// back from Flush.
func TestNewWriterShortWrite(t *testing.T) {
	rec := &recordWriter{limit: 4}
	w := NewWriter(rec)
	_, err := w.WriteString("0123456789")
	require.NoError(t, err)
	err = w.Flush()
	require.Error(t, err)
	require.ErrorIs(t, err, io.ErrShortWrite)
	require.Len(t, rec.calls, 1, "a short write was retried")
	require.Equal(t, "0123456789", string(rec.calls[0]))

	rec.limit = 0
	require.NoError(t, w.Flush())
	require.Len(t, rec.calls, 2)
	require.Equal(t, "456789", string(rec.calls[1]))

	boom := errors.New("boom")
	rec.err = boom
	_, err = w.WriteString("x")
	require.NoError(t, err)
	require.ErrorIs(t, w.Flush(), boom)

	nw := NewWriter(nil)
	require.NoError(t, nw.Flush(), "nothing to flush")
	_, err = nw.WriteString("x")
	require.NoError(t, err)
	require.Error(t, nw.Flush(), "flushing into a nil io.Writer")
}

// docs/contract.md C13.2: NewReadWriter combines both over one io.ReadWriter.
func TestNewReadWriter(t *testing.T) {
	var pipe bytes.Buffer
	rw := NewReadWriter(&pipe)
	_, err := rw.WriteString("ping")
	require.NoError(t, err)
	require.Zero(t, pipe.Len(), "written before Flush")
	require.NoError(t, rw.Flush())
	require.Equal(t, "ping", pipe.String())
	s, err := rw.ReadString(4)
	require.NoError(t, err)
	require.Equal(t, "ping", s)
	_, err = rw.ReadByte()
	require.True(t, errors.Is(err, ErrEOF))
}

// ioReadable is a Reader that is also an io.Reader, as a Connection is.
type ioReadable struct{ *LinkBuffer }

func (ioReadable) Read(p []byte) (int, error)  { return 0, nil }
func (ioReadable) Write(p []byte) (int, error) { return 0, nil }

// docs/contract.md C13.3: NewIOReader returns r itself when it is an io.Reader. Otherwise
// Read copies what is buffered, Releases, never blocks, and gives (0,
// io.EOF) when nothing is there.
func TestNewIOReader(t *testing.T) {
	own := ioReadable{NewLinkBuffer()}
	defer own.Close()
	require.Equal(t, io.Reader(own), NewIOReader(own))

	setLinkBufferCap(t, 4)
	b := NewLinkBuffer()
	defer b.Close()
	r := NewIOReader(b)
	n, err := r.Read(make([]byte, 10))
	require.Equal(t, 0, n)
	require.Equal(t, io.EOF, err)

	data := pattern(100, 5)
	_, err = b.WriteBinary(data)
	require.NoError(t, err)
	require.NoError(t, b.Flush())
	n, err = r.Read(nil)
	require.NoError(t, err)
	require.Zero(t, n)
	p := make([]byte, 30)
	n, err = r.Read(p)
	require.NoError(t, err)
	require.Equal(t, 30, n)
	require.Equal(t, data[:30], p)
	require.Equal(t, 70, b.Len())
	all, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, data[30:], all)
	require.LessOrEqual(t, b.retained(), idleRetained(b), "Read does not Release")
}

// docs/contract.md C13.3: NewIOWriter returns w itself when it is an io.Writer. Otherwise
// Write copies p (the caller may reuse it at once) and Flushes.
func TestNewIOWriter(t *testing.T) {
	own := ioReadable{NewLinkBuffer()}
	defer own.Close()
	require.Equal(t, io.Writer(own), NewIOWriter(own))

	b := NewLinkBuffer()
	defer b.Close()
	w := NewIOWriter(b)
	p := pattern(BinaryInplaceThreshold+100, 6) // large enough that WriteBinary would not copy
	want := append([]byte(nil), p...)
	n, err := w.Write(p)
	require.NoError(t, err)
	require.Equal(t, len(p), n)
	p[0] ^= 0xff
	require.Zero(t, b.MallocLen())
	require.Equal(t, want, b.Bytes())
	_, err = b.WriteString("staged")
	require.NoError(t, err)
	n, err = w.Write(nil) // an empty Write still Flushes what is staged, as in the reference
	require.NoError(t, err)
	require.Zero(t, n)
	require.Zero(t, b.MallocLen())
	require.Equal(t, append(want, "staged"...), b.Bytes())

	require.NoError(t, b.Close())
	_, err = w.Write([]byte("x"))
	require.True(t, errors.Is(err, ErrConnClosed), "Write into a closed buffer: %v", err)
}

// docs/contract.md C13.3: NewIOReadWriter returns rw itself when it is an io.ReadWriter,
// otherwise combines the two.
func TestNewIOReadWriter(t *testing.T) {
	own := ioReadable{NewLinkBuffer()}
	defer own.Close()
	require.Equal(t, io.ReadWriter(own), NewIOReadWriter(own))

	b := NewLinkBuffer()
	defer b.Close()
	rw := NewIOReadWriter(b)
	_, err := io.WriteString(rw, "round trip")
	require.NoError(t, err)
	got, err := io.ReadAll(rw)
	require.NoError(t, err)
	require.Equal(t, "round trip", string(got))
	n, err := rw.Read(make([]byte, 1))
	require.Zero(t, n)
	require.Equal(t, io.EOF, err)
}

// docs/contract.md C13.1–C13.3: the adapters given nil, failing or short
// sources: reads end with an error, writes fail, sizes <= 0 give zero
// values, nothing panics.
func TestAdaptersBadInput(t *testing.T) {
	cases := []argCase{
		{"NewReader(nil).Next", true, func() error { _, err := NewReader(nil).Next(1); return err }},
		{"NewReader(nil).Next(-1)", false, func() error { // C2.3 via C13.1: zero values, nil
			p, err := NewReader(nil).Next(-1)
			return firstErr(err, check(len(p) == 0, "data for n<=0"))
		}},
		{"NewReader(nil).Until", true, func() error { _, err := NewReader(nil).Until('x'); return err }},
		{"NewWriter(nil).Flush", true, func() error {
			w := NewWriter(nil)
			_, _ = w.WriteString("x")
			return w.Flush()
		}},
		{"NewWriter(w).Malloc(-1)", false, func() error { _, err := NewWriter(io.Discard).Malloc(-1); return err }},
		{"NewReadWriter(nil)", true, func() error { _, err := NewReadWriter(nil).ReadByte(); return err }},
		{"NewReader(failing).Next", true, func() error {
			_, err := NewReader(failingReader{}).Next(10)
			return err
		}},
		{"NewReader(short).Next(huge)", true, func() error {
			_, err := NewReader(strings.NewReader("abc")).Next(1 << 40)
			return err
		}},
		{"NewIOReader(empty).Read", true, func() error { _, err := NewIOReader(NewLinkBuffer()).Read(make([]byte, 4)); return err }},
		{"NewIOWriter(closed).Write", true, func() error {
			b := NewLinkBuffer()
			b.Close()
			_, err := NewIOWriter(b).Write([]byte("x"))
			return err
		}},
	}
	runArgCases(t, cases)
}

// The io adapters given a nil Reader or Writer, untyped or a nil
// *LinkBuffer: Read and Write must fail with an error, not panic.
func TestIOAdaptersNil(t *testing.T) {
	var nilR Reader
	var nilW Writer
	var nilRW ReadWriter
	var nilLB *LinkBuffer
	calls := map[string]func() error{
		"NewIOReader(nil).Read":                  func() error { _, err := NewIOReader(nilR).Read(make([]byte, 4)); return err },
		"NewIOWriter(nil).Write":                 func() error { _, err := NewIOWriter(nilW).Write([]byte("x")); return err },
		"NewIOReadWriter(nil).Read":              func() error { _, err := NewIOReadWriter(nilRW).Read(make([]byte, 4)); return err },
		"NewIOReadWriter(nil).Write":             func() error { _, err := NewIOReadWriter(nilRW).Write([]byte("x")); return err },
		"NewIOReader(nil *LinkBuffer).Read":      func() error { _, err := NewIOReader(nilLB).Read(make([]byte, 4)); return err },
		"NewIOWriter(nil *LinkBuffer).Write":     func() error { _, err := NewIOWriter(nilLB).Write([]byte("x")); return err },
		"NewIOReadWriter(nil *LinkBuffer).Read":  func() error { _, err := NewIOReadWriter(nilLB).Read(make([]byte, 4)); return err },
		"NewIOReadWriter(nil *LinkBuffer).Write": func() error { _, err := NewIOReadWriter(nilLB).Write([]byte("x")); return err },
	}
	var panicked []string
	for name, call := range calls {
		func() {
			defer func() {
				if r := recover(); r != nil {
					panicked = append(panicked, name)
				}
			}()
			if err := call(); err == nil {
				t.Errorf("%s: no error", name)
			}
		}()
	}
	if len(panicked) > 0 {
		sort.Strings(panicked)
		t.Fatalf("%s panic with a nil argument instead of returning an error (nocopy_readwriter.go: a nil *LinkBuffer is not taken for nil)", strings.Join(panicked, ", "))
	}
}

// failingReader is an io.Reader whose every Read fails.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("broken reader") }
