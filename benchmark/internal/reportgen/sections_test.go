package reportgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSectionsKeepsFilesInNameOrder(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"b.md":    "## B\n\nsecond\n",
		"a.md":    "\n## A\n\nfirst\n\n",
		"not.txt": "ignored",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Sections(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	a, b := strings.Index(s, "## A\n\nfirst\n"), strings.Index(s, "## B\n\nsecond\n")
	if a < 0 || b < 0 || a > b || strings.Contains(s, "ignored") {
		t.Fatalf("sections out of order or missing:\n%s", s)
	}
	if !strings.Contains(s, "docs/benchmark/sections/a.md") {
		t.Fatalf("no source comment:\n%s", s)
	}
	none, err := Sections(filepath.Join(dir, "missing"))
	if err != nil || len(none) != 0 {
		t.Fatalf("missing dir: %q, %v", none, err)
	}
}
