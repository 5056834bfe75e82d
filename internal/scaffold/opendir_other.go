//go:build !unix

package scaffold

import "os"

// dirOpen reports nothing where there are no Unix owners and modes.
func dirOpen(os.FileInfo) string { return "" }
