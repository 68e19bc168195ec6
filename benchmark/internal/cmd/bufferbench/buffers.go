package main

import (
	ours "github.com/cloudwego/netpoll"
	ref "netpollref.local/netpoll"
)

// Buffer is the part of the LinkBuffer API the scenarios use. Both
// implementations are driven through it, so both pay the same interface-call
// cost (a few ns per call), which slightly compresses ratios towards 1 for the
// smallest messages.
type Buffer interface {
	Len() int
	Malloc(n int) ([]byte, error)
	WriteBinary(p []byte) (int, error)
	WriteString(s string) (int, error)
	WriteDirect(p []byte, remainLen int) error
	Flush() error
	Next(n int) ([]byte, error)
	Peek(n int) ([]byte, error)
	Skip(n int) error
	ReadBinary(n int) ([]byte, error)
	Release() error
	Close() error
}

// impl is one LinkBuffer implementation under test.
type impl struct {
	name string
	new  func() Buffer
}

var (
	implOurs = impl{"ours", func() Buffer { return ours.NewLinkBuffer() }}
	implRef  = impl{"ref", func() Buffer { return ref.NewLinkBuffer() }}
)
