// Package netpoll is a non-blocking reactor for TCP and unix-socket servers
// and clients, compatible with github.com/cloudwego/netpoll v0.7.2.
package netpoll
