package reportgen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// SectionsDir is where the hand-written sections of docs/benchmark.md live,
// relative to the directory of the Markdown file: docs/benchmark/sections.
// Their figures come from runs that cmd/report does not make (the root
// package's Scaling micro-benchmarks, say), so they are kept as written and
// appended to every regenerated report.
const SectionsDir = "benchmark/sections"

// Sections returns the hand-written sections found in dir, every *.md file
// in name order, each preceded by a comment naming its source, so that a
// reader of the generated file knows which file to edit. A missing dir
// means none.
func Sections(dir string) ([]byte, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, name := range names {
		text, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n<!-- Hand-written: kept from %s by cmd/report. Edit that file, not this section. -->\n\n",
			filepath.ToSlash(filepath.Join("docs", SectionsDir, filepath.Base(name))))
		b.Write(bytes.TrimSpace(text))
		b.WriteString("\n")
	}
	return b.Bytes(), nil
}
