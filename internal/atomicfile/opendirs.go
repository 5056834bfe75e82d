package atomicfile

import (
	"errors"
	"fmt"
	"os"
)

// OpenDirs lists, as "path (why)", each of paths that is a directory
// open to other users (OpenDir). Paths that do not exist, or are not
// directories, are skipped; another error of Stat is returned.
func OpenDirs(paths ...string) ([]string, error) {
	var open []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return nil, err
		case !fi.IsDir():
			continue
		}
		if why := OpenDir(fi); why != "" {
			open = append(open, fmt.Sprintf("%s (%s)", p, why))
		}
	}
	return open, nil
}
