// Command report runs the benchmarks and regenerates docs/benchmark.md with
// its tables and plots (docs/benchmark/*.png) and the raw results
// (docs/benchmark/results.json):
//
//	go run ./cmd/report            # LinkBuffer comparison, then the server suite (~20 min on 2 CPUs)
//	go run ./cmd/report -quick     # shorter runs (~4.5 min)
//	go run ./cmd/report -from ../docs/benchmark/results.json   # re-render only
//
// The sections in docs/benchmark/sections/*.md are hand-written (figures of
// runs this command does not make); they are appended to the report as
// they are.
//
// Flags after -- go to the server suite (see `go run ./cmd/server -h`).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/cloudwego/netpoll/benchmark/internal/refprep"
	"github.com/cloudwego/netpoll/benchmark/internal/reportgen"
	"github.com/cloudwego/netpoll/benchmark/internal/results"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "short runs (server suite: -quick; LinkBuffer: 3 rounds of 100ms)")
	from := flag.String("from", "", "render this results.json instead of running the benchmarks")
	buffer := flag.Bool("buffer", true, "run the LinkBuffer comparison too")
	out := flag.String("out", "", "the Markdown file to write (default: <repository>/docs/benchmark.md)")
	flag.Parse()
	serverArgs := flag.Args()

	root, err := refprep.ModuleRoot()
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(root, "..", "docs", "benchmark.md")
	}
	imgRel := "benchmark"
	imgDir := filepath.Join(filepath.Dir(*out), imgRel)
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	jsonPath := filepath.Join(imgDir, "results.json")

	var suite *results.Suite
	if *from != "" {
		if suite, err = results.Load(*from); err != nil {
			return err
		}
	} else {
		if err := refprep.Ensure(root); err != nil {
			return fmt.Errorf("preparing the reference netpoll: %w", err)
		}
		var bufferOut string
		if *buffer {
			args := []string{}
			if *quick {
				args = append(args, "-rounds", "3", "-benchtime", "100ms")
			}
			fmt.Fprintln(os.Stderr, "== LinkBuffer: ours vs ref")
			if bufferOut, err = goRun(root, "./internal/cmd/bufferbench", args, true); err != nil {
				return err
			}
		}
		args := []string{"-json", jsonPath}
		if *quick {
			args = append(args, "-quick")
		}
		args = append(args, serverArgs...)
		fmt.Fprintln(os.Stderr, "== server suite")
		if _, err := goRun(root, "./internal/cmd/serverbench", args, false); err != nil {
			return err
		}
		if suite, err = results.Load(jsonPath); err != nil {
			return err
		}
		suite.Buffer = bufferOut
		if err := results.Save(jsonPath, suite); err != nil {
			return err
		}
	}
	files, err := reportgen.WritePlots(suite, imgDir)
	if err != nil {
		return err
	}
	// The hand-written sections (docs/benchmark/sections/*.md) follow the
	// generated report, unchanged.
	kept, err := reportgen.Sections(filepath.Join(filepath.Dir(*out), reportgen.SectionsDir))
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, append(reportgen.Markdown(suite, imgRel), kept...), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s", *out)
	for _, f := range files {
		fmt.Fprintf(os.Stderr, ", %s", f)
	}
	fmt.Fprintln(os.Stderr)
	return nil
}

// goRun runs `go run pkg args...` in the benchmark module, its output shown
// as it comes; with capture it also returns the standard output.
func goRun(root, pkg string, args []string, capture bool) (string, error) {
	cmd := exec.Command(refprep.GoTool(), append([]string{"run", pkg}, args...)...)
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout = os.Stdout
	if capture {
		cmd.Stdout = io.MultiWriter(os.Stdout, &buf)
	}
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("%s exited with %d", pkg, exit.ExitCode())
		}
		return "", err
	}
	return buf.String(), nil
}
