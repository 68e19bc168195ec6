//go:build linux && !race

package netpoll

import "golang.org/x/sys/unix"

// Without the race detector the raw socket I/O of sys_linux.go has nothing
// to report (see sys_race_linux.go).
func raceRead([]byte) {}

func raceRelease() {}

func raceWrote([]byte, int) {}

func raceWrotev([]unix.Iovec, int) {}
