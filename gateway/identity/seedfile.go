package identity

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
)

// ReadSeedFile reads an nkey seed file: a bare seed, or a decorated file
// in which the first line that parses as a seed wins. Errors name the
// file, never its contents.
func ReadSeedFile(path string) (nkeys.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer clear(data)
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "S") {
			if kp, err := nkeys.FromSeed([]byte(line)); err == nil {
				return kp, nil
			}
		}
	}
	return nil, fmt.Errorf("identity: %s: no nkey seed in file: %w", path, ErrKey)
}
