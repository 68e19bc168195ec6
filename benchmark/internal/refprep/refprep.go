// Package refprep materialises the reference implementation, cloudwego/netpoll
// v0.7.2, under the alias module path netpollref.local/netpoll, so that one
// benchmark binary can link both it and this repository's netpoll (which
// declares the same module path).
//
// Ensure downloads the reference with `go mod download` (so it comes from the
// module proxy and is checked against the checksum database like any other
// dependency), copies its non-test sources into <benchmark module>/.ref,
// rewrites its module path and self-imports, and writes a stamp file last.
// A directory whose stamp matches is left alone, so Ensure is idempotent and
// cheap after the first run. The directory is git-ignored and never checked in.
//
// This package imports only the standard library: it must build before .ref
// exists.
package refprep

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

const (
	// RefModule and RefVersion name the reference implementation.
	RefModule  = "github.com/cloudwego/netpoll"
	RefVersion = "v0.7.2"
	// Alias is the module path the reference is rewritten to.
	Alias = "netpollref.local/netpoll"
	// Dir is the reference's directory, relative to the benchmark module root.
	Dir = ".ref"

	benchModule = "github.com/cloudwego/netpoll/benchmark"
	stampName   = ".prepared"
	// stampFormat changes whenever the preparation itself changes, forcing a redo.
	stampFormat = "refprep/1"
)

// importRE matches an import path of the reference module or one of its packages.
var importRE = regexp.MustCompile(`"` + regexp.QuoteMeta(RefModule) + `(/[^"]*)?"`)

// ModuleRoot returns the directory of the benchmark module's go.mod, as seen
// from the current directory. It fails outside that module.
func ModuleRoot() (string, error) {
	out, err := exec.Command(GoTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	data, err := os.ReadFile(gomod)
	if gomod == "" || err != nil || modulePath(data) != benchModule {
		return "", fmt.Errorf("refprep: run inside the %s module (go.mod: %q)", benchModule, gomod)
	}
	return filepath.Dir(gomod), nil
}

// GoTool returns the go command to run: the one of the toolchain that built
// this program (so that `make GO=/other/go bench` stays on that toolchain),
// otherwise "go" from $PATH.
func GoTool() string {
	// runtime.GOROOT is deprecated for finding the toolchain of the *running
	// program's user*, but here the toolchain that built us is the one wanted.
	if root := runtime.GOROOT(); root != "" { //nolint:staticcheck
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// Ensure makes root/.ref hold the prepared reference, doing the work only if
// the stamp is missing or stale. It is not safe to run concurrently with
// itself on the same root, but a run cut short leaves either the old complete
// directory or none (the new one is built aside and renamed into place).
func Ensure(root string) error {
	dst := filepath.Join(root, Dir)
	want := stampFormat + " " + RefModule + "@" + RefVersion + " => " + Alias + "\n"
	if got, err := os.ReadFile(filepath.Join(dst, stampName)); err == nil && string(got) == want {
		return nil
	}
	src, err := download()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(root, Dir+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op after the rename succeeds
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := copyRewritten(src, tmp); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, stampName), []byte(want), 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// download fetches the reference into the module cache and returns its directory.
func download() (string, error) {
	// Run outside any module so that the benchmark module's go.mod, whose
	// replacement directory may not exist yet, plays no part.
	cmd := exec.Command(GoTool(), "mod", "download", "-json", RefModule+"@"+RefVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GO111MODULE=on")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil && runErr == nil {
		return "", fmt.Errorf("go mod download: decoding its output: %w", err)
	}
	switch {
	case info.Error != "":
		return "", fmt.Errorf("go mod download %s@%s: %s", RefModule, RefVersion, info.Error)
	case runErr != nil:
		return "", fmt.Errorf("go mod download %s@%s: %w: %s", RefModule, RefVersion, runErr, stderr.Bytes())
	case info.Dir == "":
		return "", errors.New("go mod download: no directory in its output")
	}
	return info.Dir, nil
}

// copyRewritten copies the reference's go.mod, go.sum, licence files and
// non-test Go sources from src to dst, renaming the module to Alias.
func copyRewritten(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel != "." && (d.Name() == "testdata" || d.Name() == "docs" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		name := d.Name()
		keep := name == "go.mod" || name == "go.sum" || name == "LICENSE" || name == "NOTICE" ||
			(strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go"))
		if !keep {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch {
		case rel == "go.mod":
			data, err = renameModule(data)
			if err != nil {
				return err
			}
		case strings.HasSuffix(name, ".go"):
			data = importRE.ReplaceAll(data, []byte(`"`+Alias+`$1"`))
		}
		// Files in the module cache are read-only; the copies are not.
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
}

// renameModule rewrites the module directive of a go.mod file to Alias.
func renameModule(gomod []byte) ([]byte, error) {
	if modulePath(gomod) != RefModule {
		return nil, fmt.Errorf("refprep: reference go.mod declares %q, want %q", modulePath(gomod), RefModule)
	}
	lines := strings.Split(string(gomod), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "module ") {
			lines[i] = "module " + Alias
			break
		}
	}
	return []byte(strings.Join(lines, "\n")), nil
}

// modulePath returns the path in a go.mod file's module directive, or "".
func modulePath(gomod []byte) string {
	for _, l := range strings.Split(string(gomod), "\n") {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
