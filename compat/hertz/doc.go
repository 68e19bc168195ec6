// Package hertz checks this netpoll under Hertz v0.10.4, the HTTP framework
// whose Linux transport it is. go.mod replaces github.com/cloudwego/netpoll
// with the repository root, so everything here, Hertz included, runs on this
// implementation.
//
// The tests start a real Hertz server on the netpoll transport (a free
// loopback port; every accepted connection is checked to be a netpoll
// connection and counted until its close callbacks run) and drive it through
// net/http, through raw TCP, and through Hertz's own client dialing with
// netpoll's dialer: keep-alive, pipelining, 1 MiB bodies each way, chunked
// streaming, 500 requests over 50 connections, clients that vanish mid-request
// or mid-response, and graceful shutdown. A few tests pin down a single
// behaviour of the netpoll API that Hertz relies on. Each test checks that its
// goroutines and fds are gone when it ends.
//
// run.sh runs these and Hertz's own tests of its transport, codec, server and
// client against this netpoll; `make compat` at the root calls it.
package hertz
