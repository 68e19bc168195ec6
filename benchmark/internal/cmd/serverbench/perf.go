package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudwego/netpoll/benchmark/internal/results"
)

// perfEvents are the events counted: each syscall the tables group, present
// on this kernel, and the context switches. Tracepoints count without
// slowing the process much, unlike strace.
func perfEvents() []string {
	var out []string
	for _, e := range results.SyscallEvents() {
		name := "sys_enter_" + e
		for _, dir := range []string{"/sys/kernel/tracing/events/syscalls/", "/sys/kernel/debug/tracing/events/syscalls/"} {
			if _, err := os.Stat(dir + name); err == nil {
				out = append(out, "syscalls:"+name)
				break
			}
		}
	}
	return append(out, "context-switches")
}

// perfUsable reports whether `perf stat` can count syscall tracepoints here.
func perfUsable() error {
	path, err := exec.LookPath("perf")
	if err != nil {
		return err
	}
	if len(perfEvents()) < 2 {
		return errors.New("no syscall tracepoints")
	}
	out, err := exec.Command(path, "stat", "-x,", "-e", "syscalls:sys_enter_nanosleep", "--", "sleep", "0.01").CombinedOutput()
	if err != nil {
		return fmt.Errorf("perf stat: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// perfCount counts events in the threads of process pid, between enable
// and disable. Threads the process starts later are not counted (perf
// attaches to the threads it finds); the measured processes start theirs
// during the warmup.
type perfCount struct {
	cmd      *exec.Cmd
	stderr   bytes.Buffer
	ctl      *os.File // perf's control commands
	ack      *bufio.Reader
	ackFiles [2]*os.File
	stopped  bool
	counts   map[string]float64
	err      error
}

// startPerf attaches perf to pid with its counters disabled.
func startPerf(pid int) (*perfCount, error) {
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	p := &perfCount{ctl: ctlW, ack: bufio.NewReader(ackR), ackFiles: [2]*os.File{ackR, ackW}}
	p.cmd = exec.Command("perf", "stat", "-x,", "-D", "-1", "--control", "fd:3,4",
		"-e", strings.Join(perfEvents(), ","), "-p", strconv.Itoa(pid))
	p.cmd.Stderr = &p.stderr
	p.cmd.ExtraFiles = []*os.File{ctlR, ackW}
	err = p.cmd.Start()
	ctlR.Close()
	ackW.Close()
	if err != nil {
		ctlW.Close()
		ackR.Close()
		return nil, err
	}
	return p, nil
}

// command sends perf a control command and waits for its acknowledgement.
func (p *perfCount) command(c string) error {
	if _, err := io.WriteString(p.ctl, c+"\n"); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		l, err := p.ack.ReadString('\n')
		if err == nil && strings.Trim(l, "\x00 \n") != "ack" {
			err = fmt.Errorf("perf answered %q to %s", l, c)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("perf did not acknowledge %s", c)
	}
}

func (p *perfCount) enable() error  { return p.command("enable") }
func (p *perfCount) disable() error { return p.command("disable") }

// stop ends perf and returns the counts by event name.
func (p *perfCount) stop() (map[string]float64, error) {
	if p.stopped {
		return p.counts, p.err
	}
	p.stopped = true
	p.counts, p.err = p.finish()
	return p.counts, p.err
}

func (p *perfCount) finish() (map[string]float64, error) {
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait() // perf exits non-zero on SIGINT
	p.ctl.Close()
	p.ackFiles[0].Close()
	counts := make(map[string]float64)
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		f := strings.Split(l, ",")
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue // <not counted>, <not supported>
		}
		counts[f[2]] = v
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("perf stat printed no count: %s", strings.TrimSpace(p.stderr.String()))
	}
	return counts, nil
}
