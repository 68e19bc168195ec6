package refprep

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// Launch prepares the reference and then runs `go run pkg args...` from the
// benchmark module's root, with this process's standard streams, returning
// the exit code to leave with. The commands under cmd/ are such launchers:
// the programs they start import the reference, so they cannot be compiled
// until Ensure has run.
func Launch(pkg string, args []string) int {
	root, err := ModuleRoot()
	if err == nil {
		err = Ensure(root)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "preparing the reference netpoll:", err)
		return 1
	}
	cmd := exec.Command(GoTool(), append([]string{"run", pkg}, args...)...)
	cmd.Dir = root
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
}
