package report

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

func formatFloat(v float64, prec int) string {
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// Environment names the toolchain, the machine and the versions compared, in one line.
func Environment() string {
	parts := []string{runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH,
		fmt.Sprintf("GOMAXPROCS=%d", runtime.GOMAXPROCS(0)), fmt.Sprintf("%d CPUs", runtime.NumCPU())}
	if cpu := cpuModel(); cpu != "" {
		parts = append(parts, cpu)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/bytedance/gopkg" {
				parts = append(parts, "bytedance/gopkg "+d.Version+" (used by both)")
			}
		}
	}
	return strings.Join(append(parts, "ref=cloudwego/netpoll v0.7.2"), ", ")
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
