// Package hertz checks that this netpoll works under a real Hertz v0.10.4
// server and client.
package hertz
