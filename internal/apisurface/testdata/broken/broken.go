package broken

// F does not compile.
func F() int { return missing }
