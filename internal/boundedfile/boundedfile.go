// Package boundedfile reads the files moat is configured with (certificates,
// keys, CA bundles, CRLs, its configuration) with a size limit, so that a
// wrong path, such as /dev/zero or a multi-gigabyte log, is an error naming
// the limit rather than memory growing until the process is killed.
package boundedfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Limits for the kinds of file moat reads. A CA bundle of every public root
// is about 200 KiB; CRLs of large CAs reach tens of MiB.
const (
	MaxPEM    = 16 << 20  // certificates, keys, CA bundles, keystores
	MaxCRL    = 256 << 20 // revocation lists
	MaxConfig = 16 << 20  // moat run's configuration file
)

// TooLargeError says a file holds more than the limit allowed.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("larger than %d MiB, the most moat reads from such a file; is it the right path?", e.Limit>>20)
}

// Read returns the whole content of path. Every error is an *fs.PathError
// naming path, as os.ReadFile's are; a file holding more than limit bytes
// is one whose Err is a *TooLargeError.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b []byte
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() <= limit {
		b = make([]byte, 0, fi.Size()+1) // one read past the end sees EOF
	}
	w := &limitedBuffer{b: b, limit: limit}
	if _, err := io.Copy(w, f); err != nil {
		var tl *TooLargeError
		if errors.As(err, &tl) {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		return nil, err
	}
	return w.b, nil
}

// limitedBuffer collects writes up to limit bytes and fails past it.
type limitedBuffer struct {
	b     []byte
	limit int64
}

func (w *limitedBuffer) Write(p []byte) (int, error) {
	if int64(len(w.b))+int64(len(p)) > w.limit {
		return 0, &TooLargeError{Limit: w.limit}
	}
	w.b = append(w.b, p...)
	return len(p), nil
}
