module github.com/cloudwego/netpoll/benchmark

go 1.21

require (
	github.com/cloudwego/netpoll v0.0.0
	netpollref.local/netpoll v0.0.0
)

require (
	github.com/bytedance/gopkg v0.1.4 // indirect
	github.com/cloudwego/gopkg v0.1.4 // indirect
	golang.org/x/sys v0.30.0 // indirect
)

// Ours: the repository root.
replace github.com/cloudwego/netpoll => ../

// The reference, cloudwego/netpoll v0.7.2, under an alias path; generated and
// git-ignored (go generate, or any command under cmd/). See internal/refprep.
replace netpollref.local/netpoll => ./.ref
