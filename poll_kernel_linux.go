//go:build linux

package netpoll

import "golang.org/x/sys/unix"

// parkAfterSettled says whether the poller may park right after a settled
// batch, without an empty poll first (poll_default_linux.go, wait). That
// relies on the kernel raising an edge on the epoll fd for every new
// callback of one of its fds, even one that comes while an epoll_wait is
// handing out events. Linux 5.0 to 5.5 raised none then (it was fixed in
// 5.6, "eventpoll: fix missing wakeup for ovflist in ep_poll_callback"), and
// older kernels raised one after every epoll_wait that left a
// level-triggered fd on the ready list, which would wake the poller after
// each batch. So before 5.6 the poller always polls until a poll finds
// nothing.
var parkAfterSettled = kernelAtLeast(releaseOf(), 5, 6)

// releaseOf returns the running kernel's release string, or "" if uname fails.
func releaseOf() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelAtLeast reports whether release (as uname gives it: "6.1.0-13-amd64")
// is major.minor or later; a release it cannot read is not.
func kernelAtLeast(release string, major, minor int) bool {
	var v [2]int
	i := 0
	for k := range v {
		start := i
		for i < len(release) && release[i] >= '0' && release[i] <= '9' {
			v[k] = v[k]*10 + int(release[i]-'0')
			i++
		}
		if i == start || (k == 0 && (i == len(release) || release[i] != '.')) {
			return false
		}
		i++ // the dot after the major number
	}
	return v[0] > major || v[0] == major && v[1] >= minor
}
