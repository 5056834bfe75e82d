//go:build !unix

package atomicfile

import "os"

// OpenDir reports nothing where there are no Unix owners and modes.
func OpenDir(os.FileInfo) string { return "" }
