// Package apisurface lists the exported surface of a Go package as sorted,
// self-describing text lines, so that two versions of a package can be
// compared line by line.
//
// The package is loaded from the export data that the go command compiles
// for a fixed target platform (by default linux/amd64, without -race), so the
// result does not depend on the machine or on the flags of the calling test.
// It needs the go command on PATH and adds no module dependency: the loader
// is `go list -export -deps` plus go/importer's gc importer.
package apisurface

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Target is the platform whose file set is enumerated.
type Target struct {
	GOOS   string
	GOARCH string
	Race   bool // the -race build (a different file set); the checked-in surfaces are without it
}

// Linux is the platform the checked-in surfaces are written for.
var Linux = Target{GOOS: "linux", GOARCH: "amd64"}

// listed is the part of `go list -json` output the loader reads.
type listed struct {
	ImportPath string
	Export     string
	Error      *struct{ Err string }
}

// Load compiles importPath (resolved from the module that contains dir) for
// target and returns its type information, read from the compiler's export
// data. A package that does not compile is an error that carries the
// compiler's message.
func Load(dir, importPath string, target Target) (*types.Package, error) {
	exports, err := listExports(dir, importPath, target)
	if err != nil {
		return nil, err
	}
	if _, ok := exports[importPath]; !ok {
		return nil, fmt.Errorf("apisurface: go list gave no export data for %s (has it any non-test Go files for %s/%s?)",
			importPath, target.GOOS, target.GOARCH)
	}
	lookup := func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("apisurface: no export data for %s", path)
		}
		return os.Open(file)
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", lookup)
	pkg, err := imp.Import(importPath)
	if err != nil {
		return nil, fmt.Errorf("apisurface: reading export data of %s: %w", importPath, err)
	}
	return pkg, nil
}

// listExports runs `go list -e -export -deps` and maps each import path to its
// export data file. Any package error (a compile error included) fails.
func listExports(dir, importPath string, target Target) (map[string]string, error) {
	goBin, err := goCommand()
	if err != nil {
		return nil, err
	}
	args := []string{"list", "-e", "-export", "-deps", "-json=ImportPath,Export,Error"}
	if target.Race {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, "--", importPath)...)
	cmd.Dir = dir
	cmd.Env = targetEnv(os.Environ(), target)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("apisurface: go list %s in %s: %v\n%s", importPath, dir, err, stderr.String())
	}
	exports := make(map[string]string)
	var problems []string
	dec := json.NewDecoder(&stdout)
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("apisurface: decoding go list output: %w", err)
		}
		if p.Error != nil {
			problems = append(problems, p.ImportPath+": "+p.Error.Err)
			continue
		}
		if p.Export != "" {
			exports[p.ImportPath] = p.Export
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("apisurface: %s does not build for %s/%s:\n%s\n%s",
			importPath, target.GOOS, target.GOARCH, strings.Join(problems, "\n"), stderr.String())
	}
	return exports, nil
}

// targetEnv returns env set up for target: GOOS and GOARCH replaced, and
// -race and -tags dropped from GOFLAGS, since both change the file set.
func targetEnv(env []string, target Target) []string {
	out := make([]string, 0, len(env)+3)
	goflags := ""
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "GOOS="), strings.HasPrefix(kv, "GOARCH="):
		case strings.HasPrefix(kv, "GOFLAGS="):
			goflags = strings.TrimPrefix(kv, "GOFLAGS=")
		default:
			out = append(out, kv)
		}
	}
	var kept []string
	for _, f := range strings.Fields(goflags) {
		if f == "-race" || f == "--race" || strings.HasPrefix(f, "-tags") || strings.HasPrefix(f, "--tags") {
			continue
		}
		kept = append(kept, f)
	}
	return append(out, "GOOS="+target.GOOS, "GOARCH="+target.GOARCH, "GOFLAGS="+strings.Join(kept, " "))
}

// goCommand finds the go command on PATH (go test and go run put their own
// GOROOT/bin first).
func goCommand() (string, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("apisurface: the go command is not on PATH")
	}
	return p, nil
}
