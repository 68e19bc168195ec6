package netpoll

import (
	"errors"
	"io"
)

// Adapters between the nocopy Reader/Writer and io.Reader/io.Writer.

// readChunk is the size of one read from the wrapped io.Reader, and
// maxChunkReads bounds the reads of one fill that make no progress.
const (
	readChunk     = 4096
	maxChunkReads = 16
)

// NewReader returns a Reader that pulls from r. Reads block, as r does,
// until the bytes they need have arrived; the end of r gives an error
// matching ErrEOF, and other errors of r are returned as they are. Until
// searches only bytes already pulled. A nil r gives a Reader whose reads
// fail with ErrEOF. A read needing over 1 GiB more than is buffered fails
// at once.
func NewReader(r io.Reader) Reader {
	return &zcReader{r: r, buf: NewLinkBuffer()}
}

// NewWriter returns a Writer that stages into a LinkBuffer; Flush writes all
// staged bytes to w with one Write call. A short write returns an error and
// keeps the unwritten bytes for the next Flush. A nil w makes a Flush with
// staged bytes fail.
func NewWriter(w io.Writer) Writer {
	return &zcWriter{w: w, buf: NewLinkBuffer()}
}

// NewReadWriter combines NewReader and NewWriter over rw; a nil rw fails as
// a nil r and a nil w do.
func NewReadWriter(rw io.ReadWriter) ReadWriter {
	return &zcReadWriter{zcReader: zcReader{r: rw, buf: NewLinkBuffer()}, zcWriter: zcWriter{w: rw, buf: NewLinkBuffer()}}
}

// NewIOReader returns r itself if it is an io.Reader (a Connection is).
// Otherwise Read copies what r has buffered, never blocks, Releases what it
// copied, and returns (0, io.EOF) when r is empty. A nil r, a nil
// *LinkBuffer included, gives a reader whose Read fails.
func NewIOReader(r Reader) io.Reader {
	if rd, ok := r.(io.Reader); ok {
		return rd
	}
	if isNilIO(r) {
		return nilIO{}
	}
	return &ioReader{r: r}
}

// NewIOWriter returns w itself if it is an io.Writer. Otherwise Write copies
// p into w and Flushes it (an empty p still Flushes what w has staged). A nil w, a nil *LinkBuffer included, gives a
// writer whose Write fails.
func NewIOWriter(w Writer) io.Writer {
	if wr, ok := w.(io.Writer); ok {
		return wr
	}
	if isNilIO(w) {
		return nilIO{}
	}
	return &ioWriter{w: w}
}

// NewIOReadWriter combines NewIOReader and NewIOWriter; a nil rw, a nil
// *LinkBuffer included, gives one whose Read and Write fail.
func NewIOReadWriter(rw ReadWriter) io.ReadWriter {
	if v, ok := rw.(io.ReadWriter); ok {
		return v
	}
	if isNilIO(rw) {
		return nilIO{}
	}
	return &ioReadWriter{ioReader: ioReader{r: rw}, ioWriter: ioWriter{w: rw}}
}

// nilIO is what the io adapters return for a nil argument: every call fails.
type nilIO struct{}

// isNilIO reports an argument the io adapters treat as nil: nil itself, or a
// nil *LinkBuffer, whose methods would panic.
func isNilIO(v interface{}) bool {
	if b, ok := v.(*LinkBuffer); ok {
		return b == nil
	}
	return v == nil
}

var errNilReadWriter = errors.New("netpoll: nil Reader or Writer")

func (nilIO) Read([]byte) (int, error)  { return 0, errNilReadWriter }
func (nilIO) Write([]byte) (int, error) { return 0, errNilReadWriter }

// zcReader buffers an io.Reader in a LinkBuffer.
type zcReader struct {
	r   io.Reader
	buf *LinkBuffer
	err error // sticky error of r
}

// fill pulls from r until n bytes are buffered or r fails.
func (z *zcReader) fill(n int) error {
	if n <= z.buf.Len() {
		return nil
	}
	if z.err != nil {
		return z.err
	}
	if z.r == nil {
		z.err = Exception(ErrEOF, "")
		return z.err
	}
	for idle := 0; z.buf.Len() < n; {
		p, err := z.buf.Malloc(max(readChunk, n-z.buf.Len()))
		if err != nil {
			return err
		}
		m, err := z.r.Read(p)
		m = max(0, min(m, len(p)))
		_ = z.buf.MallocAck(m)
		_ = z.buf.Flush()
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Not sticky: a reader such as a bytes.Buffer may have
				// more to give after its EOF.
				err = Exception(ErrEOF, "")
			} else {
				z.err = err
			}
			if z.buf.Len() < n {
				return err
			}
			return nil
		}
		if m == 0 {
			if idle++; idle >= maxChunkReads {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

func (z *zcReader) Next(n int) (p []byte, err error) {
	if err = z.fill(n); err != nil {
		return nil, err
	}
	return z.buf.Next(n)
}

func (z *zcReader) Peek(n int) (buf []byte, err error) {
	if err = z.fill(n); err != nil {
		return nil, err
	}
	return z.buf.Peek(n)
}

func (z *zcReader) Skip(n int) (err error) {
	if err = z.fill(n); err != nil {
		return err
	}
	return z.buf.Skip(n)
}

func (z *zcReader) Until(delim byte) (line []byte, err error) { return z.buf.Until(delim) }

func (z *zcReader) ReadString(n int) (s string, err error) {
	if err = z.fill(n); err != nil {
		return "", err
	}
	return z.buf.ReadString(n)
}

func (z *zcReader) ReadBinary(n int) (p []byte, err error) {
	if err = z.fill(n); err != nil {
		return nil, err
	}
	return z.buf.ReadBinary(n)
}

func (z *zcReader) ReadByte() (b byte, err error) {
	if err = z.fill(1); err != nil {
		return 0, err
	}
	return z.buf.ReadByte()
}

func (z *zcReader) Slice(n int) (r Reader, err error) {
	if err = z.fill(n); err != nil {
		return nil, err
	}
	return z.buf.Slice(n)
}

func (z *zcReader) Release() (err error) { return z.buf.Release() }

func (z *zcReader) Len() (length int) { return z.buf.Len() }

// zcWriter stages into a LinkBuffer and writes it to an io.Writer.
type zcWriter struct {
	w   io.Writer
	buf *LinkBuffer
}

func (z *zcWriter) Malloc(n int) (buf []byte, err error) { return z.buf.Malloc(n) }

func (z *zcWriter) WriteString(s string) (n int, err error) { return z.buf.WriteString(s) }

func (z *zcWriter) WriteBinary(b []byte) (n int, err error) { return z.buf.WriteBinary(b) }

func (z *zcWriter) WriteByte(b byte) (err error) { return z.buf.WriteByte(b) }

func (z *zcWriter) WriteDirect(p []byte, remainCap int) error { return z.buf.WriteDirect(p, remainCap) }

func (z *zcWriter) MallocAck(n int) (err error) { return z.buf.MallocAck(n) }

func (z *zcWriter) Append(w Writer) (err error) { return z.buf.Append(w) }

func (z *zcWriter) MallocLen() (length int) { return z.buf.MallocLen() }

func (z *zcWriter) Flush() (err error) {
	if err = z.buf.Flush(); err != nil {
		return err
	}
	if z.buf.Len() == 0 {
		return nil
	}
	if z.w == nil {
		return errors.New("netpoll writer: no io.Writer to flush to")
	}
	total := z.buf.Len()
	n, err := z.w.Write(z.buf.Bytes())
	n = max(0, min(n, total))
	_ = z.buf.Skip(n)
	_ = z.buf.Release()
	if err == nil && n < total {
		err = io.ErrShortWrite
	}
	return err
}

type zcReadWriter struct {
	zcReader
	zcWriter
}

// ioReader reads a Reader's buffered bytes through io.Reader.
type ioReader struct{ r Reader }

func (i *ioReader) Read(p []byte) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	n = min(len(p), i.r.Len())
	if n == 0 {
		return 0, io.EOF
	}
	buf, err := i.r.Next(n)
	if err != nil {
		return 0, err
	}
	copy(p, buf)
	return n, i.r.Release()
}

// ioWriter writes through a Writer.
type ioWriter struct{ w Writer }

func (i *ioWriter) Write(p []byte) (n int, err error) {
	buf, err := i.w.Malloc(len(p)) // (nil, nil) for an empty p, which still flushes what is staged
	if err != nil {
		return 0, err
	}
	copy(buf, p)
	if err = i.w.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

type ioReadWriter struct {
	ioReader
	ioWriter
}
