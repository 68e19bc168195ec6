package netpoll_test

import (
	"fmt"

	"github.com/cloudwego/netpoll"
)

// A LinkBuffer stages written bytes until Flush, then reads them back
// without blocking. Next aliases the buffer until Release; ReadString and
// Until return memory the caller keeps.
func ExampleLinkBuffer() {
	buf := netpoll.NewLinkBuffer()
	defer buf.Close()

	// Write a length-prefixed frame and a text line.
	p, _ := buf.Malloc(2)
	p[0], p[1] = 0, 5
	_, _ = buf.WriteString("hello")
	_, _ = buf.WriteString("a line\n")
	fmt.Println("pending:", buf.MallocLen(), "readable:", buf.Len())
	_ = buf.Flush()
	fmt.Println("pending:", buf.MallocLen(), "readable:", buf.Len())

	// Read the frame: header, then body.
	hdr, _ := buf.Next(2)
	size := int(hdr[0])<<8 | int(hdr[1])
	body, _ := buf.ReadString(size)
	line, _ := buf.Until('\n')
	_ = buf.Release() // hdr is invalid from here; body and line stay

	fmt.Printf("%q %q\n", body, line)
	_, err := buf.Next(1)
	fmt.Println(err)

	// Output:
	// pending: 14 readable: 0
	// pending: 0 readable: 14
	// "hello" "a line\n"
	// link buffer next[1] not enough
}
