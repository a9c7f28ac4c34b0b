package membership

import (
	"fmt"
	"io"
	"os"
)

// readFile reads path, refusing files larger than max without reading them
// whole.
func readFile(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, max)
	}
	return b, nil
}
