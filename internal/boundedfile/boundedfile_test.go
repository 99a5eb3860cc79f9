package boundedfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestReadReturnsTheWholeFileUpToTheLimit(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 4095, 4096, 100000} {
		want := bytes.Repeat([]byte{'x'}, n)
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, want, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Read(p, 100000)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: got %d bytes, %v", n, len(got), err)
		}
	}
}

func TestReadRefusesMoreThanTheLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<20+1), 0o600); err != nil {
		t.Fatal(err)
	}
	var tl *TooLargeError
	if _, err := Read(p, 1<<20); !errors.As(err, &tl) || tl.Limit != 1<<20 {
		t.Fatalf("a file one byte over the limit: %v, want *TooLargeError", err)
	}
}

// TestReadStopsOnAnEndlessDevice: /dev/zero never ends; Read must stop at
// the limit instead of growing until the process dies.
func TestReadStopsOnAnEndlessDevice(t *testing.T) {
	var tl *TooLargeError
	if _, err := Read("/dev/zero", 4<<20); !errors.As(err, &tl) {
		t.Fatalf("/dev/zero: %v, want *TooLargeError", err)
	}
}

func TestReadReportsAMissingFile(t *testing.T) {
	if _, err := Read(filepath.Join(t.TempDir(), "absent"), MaxPEM); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}
