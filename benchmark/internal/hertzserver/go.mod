// The Hertz server of the server suite's hertz scenarios: a module of its
// own, because Hertz imports github.com/cloudwego/netpoll and the suite
// builds it twice, once against this repository's netpoll and once against
// the reference v0.7.2. This file names only the direct requirements; the
// suite copies it into the git-ignored benchmark/.hertz directory, adds the
// replace line of each implementation and resolves the rest there (see
// serverbench's hertz.go), so nothing generated is checked in.
module netpollbench.local/hertzserver

go 1.22

require (
	// gopkg: the version this repository's netpoll requires, for both
	// builds (Hertz alone would select v0.1.3 for the reference).
	github.com/bytedance/gopkg v0.1.4
	github.com/cloudwego/hertz v0.10.4
	github.com/cloudwego/netpoll v0.7.2
)
