module github.com/cloudwego/netpoll/compat/hertz

go 1.21

require (
	github.com/cloudwego/hertz v0.10.4
	github.com/cloudwego/netpoll v0.7.2
	github.com/stretchr/testify v1.11.1
	go.uber.org/goleak v1.3.0
)

replace github.com/cloudwego/netpoll => ../..
