// Command bufferbench runs the LinkBuffer scenarios against this repository's
// netpoll and the reference (cloudwego/netpoll v0.7.2), interleaving the two
// round by round, and prints the medians and the ratio ours/reference (lower
// is better). Run it through ../../../cmd/buffer, which prepares the reference.
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/cloudwego/netpoll/benchmark/internal/report"
)

func main() {
	fs := flag.NewFlagSet("buffer", flag.ExitOnError)
	rounds := fs.Int("rounds", 5, "rounds; each measures every scenario once per implementation")
	benchtime := fs.Duration("benchtime", 300*time.Millisecond, "target duration of one measurement")
	run := fs.String("run", "", "only scenarios whose name matches this regular expression")
	verbose := fs.Bool("v", false, "print every measurement to stderr")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./cmd/buffer [flags]\n\nScenarios:")
		for _, s := range scenarios() {
			fmt.Fprintln(fs.Output(), "  "+s.name)
		}
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	filter, err := regexp.Compile(*run)
	if err != nil {
		fmt.Fprintln(os.Stderr, "-run:", err)
		os.Exit(2)
	}
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "-rounds must be at least 1")
		os.Exit(2)
	}

	// testing.Benchmark reads its target duration from the testing flags.
	testing.Init()
	if err := flag.Set("test.benchtime", benchtime.String()); err != nil {
		panic(err)
	}

	var list []scenario
	for _, s := range scenarios() {
		if filter.MatchString(s.name) {
			list = append(list, s)
		}
	}
	impls := []impl{implOurs, implRef}
	// Verify both implementations before timing anything: a wrong result
	// makes a timing meaningless.
	failed := false
	for _, s := range list {
		for _, im := range impls {
			if err := s.check(im); err != nil {
				fmt.Fprintln(os.Stderr, "WRONG:", err)
				failed = true
			}
		}
	}
	if failed {
		os.Exit(1)
	}

	env := report.Environment()
	fmt.Fprintf(os.Stderr, "%s\n%d scenarios x 2 implementations x %d rounds of ~%v each\n",
		env, len(list), *rounds, *benchtime)
	res := make(results)
	for r := 0; r < *rounds; r++ {
		// Alternate which implementation goes first, so neither always
		// runs on a heap or a CPU state the other left behind.
		order := impls
		if r%2 == 1 {
			order = []impl{implRef, implOurs}
		}
		for _, s := range list {
			for _, im := range order {
				m := measure(testing.Benchmark(s.bench(im)))
				res.add(s.name, im.name, m)
				if *verbose {
					fmt.Fprintf(os.Stderr, "round %d %-28s %-4s %s\n", r+1, s.name, im.name, m)
				}
			}
		}
		fmt.Fprintf(os.Stderr, "round %d/%d done\n", r+1, *rounds)
	}
	fmt.Println(env)
	fmt.Printf("rounds=%d benchtime=%v; medians over rounds; ratio = ours/ref of the medians (lower is better);\n"+
		"paired = median over rounds of ours/ref ns/op measured back to back; best = ours/ref of the fastest rounds\n"+
		"(load from other processes only adds time, so under heavy load trust paired and best); spread = (max-min)/median of ns/op, worse of the two\n\n",
		*rounds, *benchtime)
	printTable(os.Stdout, list, res)
}
