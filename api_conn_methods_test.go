//go:build darwin || freebsd || linux

package netpoll

import (
	"reflect"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFDConnectionMethods checks spec 1.3: the unexported dynamic type of a
// connection made by NewFDConnection carries every method of *TCPConnection
// (40 of them) with the same type, *UnixConnection has the same 40, and
// Reader() and Writer() return the connection itself.
func TestFDConnectionMethods(t *testing.T) {
	checkLeaks(t)
	r, w := GetSysFdPairs()
	defer syscall.Close(w)
	conn, err := NewFDConnection(r)
	require.NoError(t, err)
	defer conn.Close()

	tcp := reflect.TypeOf((*TCPConnection)(nil))
	require.Equal(t, 40, tcp.NumMethod(), "exported methods of *TCPConnection")
	assertHasMethods(t, tcp, reflect.TypeOf(conn))
	assertHasMethods(t, tcp, reflect.TypeOf((*UnixConnection)(nil)))
	assert.Equal(t, 40, reflect.TypeOf((*UnixConnection)(nil)).NumMethod(), "exported methods of *UnixConnection")

	self := reflect.ValueOf(conn).Pointer()
	assert.Equal(t, self, reflect.ValueOf(conn.Reader()).Pointer(), "Reader() returns the connection")
	assert.Equal(t, self, reflect.ValueOf(conn.Writer()).Pointer(), "Writer() returns the connection")
}

// assertHasMethods checks that got has every method of want, with the same
// parameter and result types (the receiver aside).
func assertHasMethods(t *testing.T, want, got reflect.Type) {
	t.Helper()
	for i := 0; i < want.NumMethod(); i++ {
		wm := want.Method(i)
		gm, ok := got.MethodByName(wm.Name)
		if !assert.True(t, ok, "%v lacks %s%v", got, wm.Name, methodType(wm.Type)) {
			continue
		}
		assert.Equal(t, methodType(wm.Type), methodType(gm.Type), "%v.%s", got, wm.Name)
	}
}

// methodType prints a method's type without its receiver.
func methodType(f reflect.Type) string {
	in := make([]reflect.Type, 0, f.NumIn())
	for i := 1; i < f.NumIn(); i++ {
		in = append(in, f.In(i))
	}
	out := make([]reflect.Type, 0, f.NumOut())
	for i := 0; i < f.NumOut(); i++ {
		out = append(out, f.Out(i))
	}
	return reflect.FuncOf(in, out, f.IsVariadic()).String()
}
