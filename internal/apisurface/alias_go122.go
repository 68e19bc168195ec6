//go:build go1.22

package apisurface

import "go/types"

// unalias resolves a chain of type aliases to the type it denotes.
func unalias(t types.Type) types.Type { return types.Unalias(t) }
