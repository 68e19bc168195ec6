// Command apisurface prints the exported surface of a package in the form
// that testdata/api.txt holds.
//
//	go run ./internal/apisurface/cmd/apisurface -dir DIR -pkg IMPORTPATH [-o FILE] [-note TEXT]
//
// DIR is any directory inside the module that provides the package (for the
// reference, the directory `go mod download -json github.com/cloudwego/netpoll@v0.7.2`
// reports as Dir; compat/apisurface-ref.sh does all of it). The surface is
// that of GOOS=linux GOARCH=amd64 without -race unless -goos, -goarch or
// -race say otherwise. -counts prints only the counts; -names keeps parameter
// and result names in signatures, for reading.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/cloudwego/netpoll/internal/apisurface"
)

func main() {
	dir := flag.String("dir", ".", "a directory inside the module that provides the package")
	pkg := flag.String("pkg", "github.com/cloudwego/netpoll", "import path of the package")
	out := flag.String("o", "", "write to this file instead of standard output")
	goos := flag.String("goos", apisurface.Linux.GOOS, "target GOOS")
	goarch := flag.String("goarch", apisurface.Linux.GOARCH, "target GOARCH")
	race := flag.Bool("race", false, "list the -race build instead")
	counts := flag.Bool("counts", false, "print only the counts")
	note := flag.String("note", "", "a comment line for the header (where the package came from)")
	names := flag.Bool("names", false, "keep parameter and result names in signatures (for reading; the gate compares without)")
	flag.Parse()

	target := apisurface.Target{GOOS: *goos, GOARCH: *goarch, Race: *race}
	if err := run(*dir, *pkg, *out, *note, *counts, *names, target); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(dir, pkg, out, note string, counts, names bool, target apisurface.Target) error {
	p, err := apisurface.Load(dir, pkg, target)
	if err != nil {
		return err
	}
	s := apisurface.Enumerate(p, target)
	if names {
		s = apisurface.EnumerateWithNames(p, target)
	}
	var buf bytes.Buffer
	if counts {
		for _, line := range s.Counts.Summary() {
			fmt.Fprintln(&buf, line)
		}
	} else {
		if note != "" {
			fmt.Fprintf(&buf, "# %s\n", note)
		}
		if _, err := s.WriteTo(&buf); err != nil {
			return err
		}
	}
	if out == "" {
		_, err = os.Stdout.Write(buf.Bytes())
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}
