package mux

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cloudwego/netpoll/internal/apisurface"
)

// TestAPISurface holds package mux to the exported surface of the reference
// v0.7.2 (linux/amd64, no race) listed in testdata/api.txt, made by
// compat/apisurface-ref.sh. See the root package's TestAPISurface.
func TestAPISurface(t *testing.T) {
	report, err := apisurface.Check(".", "github.com/cloudwego/netpoll/mux", filepath.Join("testdata", "api.txt"))
	require.NoError(t, err)
	if report != "" {
		t.Error(report)
	}
}
