module github.com/cloudwego/netpoll/benchmark

go 1.22.0

require (
	github.com/cloudwego/netpoll v0.0.0
	golang.org/x/sys v0.30.0
	netpollref.local/netpoll v0.0.0
)

require (
	codeberg.org/go-fonts/liberation v0.4.1 // indirect
	codeberg.org/go-latex/latex v0.0.1 // indirect
	codeberg.org/go-pdf/fpdf v0.10.0 // indirect
	git.sr.ht/~sbinet/gg v0.6.0 // indirect
	github.com/ajstarks/svgo v0.0.0-20211024235047-1546f124cd8b // indirect
	github.com/bytedance/gopkg v0.1.4 // indirect
	github.com/campoy/embedmd v1.0.0 // indirect
	github.com/cloudwego/gopkg v0.1.4 // indirect
	github.com/golang/freetype v0.0.0-20170609003504-e2365dfdc4a0 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	golang.org/x/image v0.24.0 // indirect
	golang.org/x/text v0.22.0 // indirect
	gonum.org/v1/plot v0.15.2 // indirect
)

// Ours: the repository root.
replace github.com/cloudwego/netpoll => ../

// The reference, cloudwego/netpoll v0.7.2, under an alias path; generated and
// git-ignored (go generate, or any command under cmd/). See internal/refprep.
replace netpollref.local/netpoll => ./.ref
