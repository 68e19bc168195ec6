package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/cloudwego/netpoll/benchmark/internal/refprep"
)

// The Hertz scenarios run a Hertz server, internal/hertzserver, a module of
// its own: Hertz imports github.com/cloudwego/netpoll, so it is built once
// per implementation, each time with a replace directive of that module:
//
//	ours: replace github.com/cloudwego/netpoll => <the repository root>
//	ref:  replace github.com/cloudwego/netpoll => github.com/cloudwego/netpoll v0.7.2
//
// Each build has its own go.mod, made at run time in the git-ignored
// benchmark/.hertz directory from internal/hertzserver/go.mod plus that
// line, and used through -modfile (its go.sum, <impl>.sum, sits next to
// it); `go mod tidy` resolves the requirements (through the module proxy
// the first time). The binaries are .hertz/hertzserver-<impl>.
const hertzDir = ".hertz"

// hertzReplace is the replace directive of each build.
func hertzReplace(root string) map[string]string {
	return map[string]string{
		"ours": "replace " + refprep.RefModule + " => " + filepath.Dir(root),
		"ref":  "replace " + refprep.RefModule + " => " + refprep.RefModule + " " + refprep.RefVersion,
	}
}

// buildHertz builds the Hertz server against ours and against the reference
// and returns the binaries by implementation. The go command's build cache
// makes a rebuild cheap when nothing changed.
func buildHertz() (map[string]string, error) {
	root, err := refprep.ModuleRoot()
	if err != nil {
		return nil, err
	}
	src := filepath.Join(root, "internal", "hertzserver")
	dir := filepath.Join(root, hertzDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return nil, err
	}
	bins := map[string]string{}
	for impl, replace := range hertzReplace(root) {
		seed := append(bytes.TrimRight(base, "\n"), []byte("\n\n"+replace+"\n")...)
		modfile := filepath.Join(dir, impl+".mod")
		stamp := filepath.Join(dir, impl+".seed")
		// Tidy only when the seed changed: a tidied go.mod differs from it.
		if old, err := os.ReadFile(stamp); err != nil || !bytes.Equal(old, seed) || !exists(modfile) {
			os.Remove(stamp)
			if err := os.WriteFile(modfile, seed, 0o644); err != nil {
				return nil, err
			}
			if err := goCmd(src, "mod", "tidy", "-modfile="+modfile); err != nil {
				return nil, fmt.Errorf("%s: %w", impl, err)
			}
			if err := os.WriteFile(stamp, seed, 0o644); err != nil {
				return nil, err
			}
		}
		bin := filepath.Join(dir, "hertzserver-"+impl)
		if err := goCmd(src, "build", "-modfile="+modfile, "-o", bin, "."); err != nil {
			return nil, fmt.Errorf("%s: %w", impl, err)
		}
		bins[impl] = bin
	}
	return bins, nil
}

// goCmd runs the go command in dir, outside any workspace.
func goCmd(dir string, args ...string) error {
	cmd := exec.Command(refprep.GoTool(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %v: %s", args[0], err, bytes.TrimSpace(out))
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
