package apisurface

import "fmt"

// Check lists the surface of importPath (resolved from dir) for linux/amd64
// without race and compares it with the entries in wantFile plus those in
// each of addFiles (the identifiers added on purpose). It returns "" when
// they match, and otherwise a readable report of the drift. Only a failure
// to read a file or to build the package is an error.
func Check(dir, importPath, wantFile string, addFiles ...string) (string, error) {
	want, err := ReadFile(wantFile)
	if err != nil {
		return "", err
	}
	if len(want) == 0 {
		return "", fmt.Errorf("apisurface: %s lists no entries", wantFile)
	}
	for _, f := range addFiles {
		add, err := ReadFile(f)
		if err != nil {
			return "", err
		}
		want = append(want, add...)
	}
	pkg, err := Load(dir, importPath, Linux)
	if err != nil {
		return "", err
	}
	got := Enumerate(pkg, Linux)
	d := Diff(want, got.Lines)
	if d == "" {
		return "", nil
	}
	return fmt.Sprintf("exported surface of %s (linux/amd64, no race) differs from %s: %s"+
		"Signatures are compared without parameter and result names; see package internal/apisurface.\n",
		importPath, wantFile, d), nil
}
