//go:build !go1.22

package apisurface

import "go/types"

// unalias is the identity before Go 1.22: go/types had no alias nodes then.
func unalias(t types.Type) types.Type { return t }
