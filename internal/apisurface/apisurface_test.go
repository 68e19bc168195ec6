package apisurface

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixtureSurface is what testdata/fixture must give: every line form, in
// Enumerate's order.
const fixtureSurface = `type Alias = Base
const Answer untyped int = 42
type Base struct, has unexported fields
field Base.Exported int
field Base.Inner Inner (embedded)
field Base.Mutex sync.Mutex (embedded)
field Base.Anon struct{X int "json:\"x\""}
field Base.Deep string (promoted via Inner)
field Base.Own int
method (*Base) Declared(int, int) int
method (*Base) Hidden(map[string][]*Inner, chan<- int) <-chan error
method (*Base) Lock() (promoted via Mutex)
method (*Base) PtrMethod([]byte) error (promoted via Inner)
method (*Base) TryLock() bool (promoted via Mutex)
method (*Base) Unlock() (promoted via Mutex)
method (Base) Value() string
method (Base) ValueMethod() int (promoted via Inner)
type Funcs struct, has unexported fields, not comparable
type Grid [2][]int, not comparable
var Hook func(context.Context, func())
type Iface interface, has unexported methods
embed Iface net.Conn
imethod Iface.Close() error
imethod Iface.Extra(chan int) bool
imethod Iface.LocalAddr() net.Addr
imethod Iface.Read([]byte) (int, error)
imethod Iface.RemoteAddr() net.Addr
imethod Iface.SetDeadline(time.Time) error
imethod Iface.SetReadDeadline(time.Time) error
imethod Iface.SetWriteDeadline(time.Time) error
imethod Iface.Write([]byte) (int, error)
type Inner struct
field Inner.Deep string
method (*Inner) PtrMethod([]byte) error
method (Inner) ValueMethod() int
func Keys[K comparable, V interface{}](map[K]V) []K
type Kind int
method (Kind) String() string
func Make() *secret
type Pair[T interface{}] struct, not comparable
field Pair.A T
field Pair.B T
method (Pair) Swap() Pair[T]
const Typed Kind = 2
func Variadic(string, ...int) (int, error)
type secret struct, has unexported fields, unexported
field secret.Visible *deeper
method (*secret) Do()
type deeper struct, unexported
field deeper.Z int
`

func loadFixture(t *testing.T) *Surface {
	t.Helper()
	pkg, err := Load(filepath.Join("testdata", "fixture"), "example.com/fixture", Linux)
	require.NoError(t, err)
	return Enumerate(pkg, Linux)
}

func TestEnumerateFixture(t *testing.T) {
	s := loadFixture(t)
	want := strings.Split(strings.TrimSuffix(fixtureSurface, "\n"), "\n")
	assert.Equal(t, want, s.Lines)

	c := s.Counts
	assert.Equal(t, 14, c.PackageLevel())
	assert.Equal(t, map[string]int{"Base": 3, "Inner": 2, "Kind": 1, "Pair": 1}, c.Methods)
	assert.Equal(t, map[string]int{"Iface": 1}, c.InterfaceMethods)
	assert.Equal(t, map[string]int{"Base": 5, "Inner": 1, "Pair": 2}, c.Fields)
	assert.Equal(t, 5, c.PromotedMethods)
	assert.Equal(t, 8, c.EmbeddedInterfaceMethods)
	assert.Equal(t, 1, c.PromotedFields)
	assert.Equal(t, 14+7+1+8, c.Total())
	assert.Equal(t, 2, c.Unexported)
}

func TestLoadBuildError(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "broken"), "example.com/broken", Linux)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not build")
	assert.Contains(t, err.Error(), "undefined: missing")
}

func TestTargetEnvDropsRaceAndTags(t *testing.T) {
	env := targetEnv([]string{"HOME=/h", "GOOS=windows", "GOARCH=arm64", "GOFLAGS=-race -mod=mod -tags=foo"},
		Target{GOOS: "linux", GOARCH: "amd64"})
	assert.Equal(t, []string{"HOME=/h", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod"}, env)
}

func TestWriteToReadFileRoundTrip(t *testing.T) {
	s := loadFixture(t)
	path := filepath.Join(t.TempDir(), "api.txt")
	var b strings.Builder
	_, err := s.WriteTo(&b)
	require.NoError(t, err)
	require.Contains(t, b.String(), "# package level: 14 (2 const, 1 var, 3 func, 8 type)\n")
	require.NoError(t, writeFile(path, "\n# a comment\n"+b.String()+"\n"))
	lines, err := ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, s.Lines, lines)
}

func TestCheckReportsDrift(t *testing.T) {
	s := loadFixture(t)
	dir := t.TempDir()
	var want []string
	for _, l := range s.Lines {
		switch {
		case l == "func Variadic(string, ...int) (int, error)":
			want = append(want, "func Variadic(string, []int) (int, error)")
		case strings.HasPrefix(l, "const Answer"):
			// dropped: Answer shows up as extra
		default:
			want = append(want, l)
		}
	}
	want = append(want, "method (*Base) Gone()")
	path := filepath.Join(dir, "api.txt")
	require.NoError(t, writeFile(path, strings.Join(want, "\n")+"\n"))

	report, err := Check(filepath.Join("testdata", "fixture"), "example.com/fixture", path)
	require.NoError(t, err)
	assert.Contains(t, report, "1 changed, 1 missing, 1 extra")
	assert.Contains(t, report, "- func Variadic(string, []int) (int, error)\n+ func Variadic(string, ...int) (int, error)\n")
	assert.Contains(t, report, "- method (*Base) Gone()\n")
	assert.Contains(t, report, "+ const Answer untyped int = 42\n")

	same := filepath.Join(dir, "same.txt")
	require.NoError(t, writeFile(same, strings.Join(s.Lines, "\n")))
	report, err = Check(filepath.Join("testdata", "fixture"), "example.com/fixture", same)
	require.NoError(t, err)
	assert.Empty(t, report)
}

func TestDiffPairsByIdentifier(t *testing.T) {
	assert.Empty(t, Diff([]string{"b", "a"}, []string{"a", "b"}))
	d := Diff(
		[]string{"method (*T) Read([]byte) (int, error)", "imethod I.M() error", "type X int"},
		[]string{"type X int", "method (*T) Read([]byte) int", "field T.F int"},
	)
	assert.Equal(t, "1 changed, 1 missing, 1 extra (- wanted, + got):\n"+
		"- method (*T) Read([]byte) (int, error)\n"+
		"+ method (*T) Read([]byte) int\n"+
		"- imethod I.M() error\n"+
		"+ field T.F int\n", d)
}

func TestKey(t *testing.T) {
	for line, key := range map[string]string{
		"method (*TCPConnection) Read([]byte) (int, error)": "method TCPConnection.Read",
		"method (Kind) String() string":                     "method Kind.String",
		"imethod Reader.Next(int) ([]byte, error)":          "imethod Reader.Next",
		"field Config.Runner func(context.Context, func())": "field Config.Runner",
		"func Keys[K comparable](map[K]int) []K":            "func Keys",
		"type LinkBuffer = UnsafeLinkBuffer":                "type LinkBuffer",
		"const ErrEOF syscall.Errno = 262":                  "const ErrEOF",
		"embed Connection net.Conn":                         "embed Connection net.Conn",
	} {
		assert.Equal(t, key, Key(line), line)
	}
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}
