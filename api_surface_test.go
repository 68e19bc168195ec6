package netpoll

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cloudwego/netpoll/internal/apisurface"
)

// TestAPISurface holds the package to the exported surface of the reference
// v0.7.2 for linux/amd64 without race, as listed in testdata/api.txt (made by
// compat/apisurface-ref.sh, never by hand), plus the additions listed by hand
// in testdata/api_additions.txt. Every constant, variable, function, type,
// exported field and method must be there with the same type, and nothing
// else may be added. Parameter and result names are not
// compared. The surface is computed by compiling the package for linux/amd64,
// so the test means the same on every host and under -race.
func TestAPISurface(t *testing.T) {
	report, err := apisurface.Check(".", "github.com/cloudwego/netpoll", filepath.Join("testdata", "api.txt"),
		filepath.Join("testdata", "api_additions.txt"))
	require.NoError(t, err)
	if report != "" {
		t.Error(report)
	}
}
