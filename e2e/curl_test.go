package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// httpUpstream serves GET /blob (a fixed random body) and POST /sha256
// (the digest of the request body) on 127.0.0.1.
func httpUpstream(t testing.TB, blob []byte) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) { w.Write(blob) })
	mux.HandleFunc("POST /sha256", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		io.Copy(h, r.Body)
		fmt.Fprint(w, hex.EncodeToString(h.Sum(nil)))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// curlThrough checks a 64 MiB download and a 64 MiB upload through moat by
// sha256, with curl verifying moat's certificate.
func curlThrough(t *testing.T, f testpki.Files, extraMoat ...string) {
	curl := needTool(t, "curl")
	blob := make([]byte, 64<<20)
	rand.Read(blob)
	want := sha256.Sum256(blob)
	_, addr := moatServer(t, f, httpUpstream(t, blob), extraMoat...)
	port := strings.TrimPrefix(addr, "127.0.0.1:")
	base := "https://localhost:" + port
	resolve := "localhost:" + port + ":127.0.0.1"

	out := filepath.Join(t.TempDir(), "blob")
	cmd := exec.Command(curl, "-sS", "--fail", "--max-time", "60", "--cacert", f.CA, "--resolve", resolve, "-o", out, base+"/blob")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl download: %v: %s", err, msg)
	}
	got, _ := os.ReadFile(out)
	if sha256.Sum256(got) != want {
		t.Fatalf("download through moat: %d bytes with a different sha256", len(got))
	}

	in := filepath.Join(t.TempDir(), "upload")
	os.WriteFile(in, blob, 0o600)
	cmd = exec.Command(curl, "-sS", "--fail", "--max-time", "60", "--cacert", f.CA, "--resolve", resolve,
		"-H", "Content-Type: application/octet-stream", "--data-binary", "@"+in, base+"/sha256")
	answer, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl upload: %v", err)
	}
	if string(answer) != hex.EncodeToString(want[:]) {
		t.Fatalf("upload through moat: upstream digest %s, want %x", answer, want)
	}
}

// TestCurlSixtyFourMiBBothWays moves 64 MiB each way through moat with curl.
func TestCurlSixtyFourMiBBothWays(t *testing.T) {
	curlThrough(t, serverFiles(t))
}

// largeChainFiles is a leaf with 600 DNS SANs plus an intermediate: a
// certificate flight near 28 KiB, larger than an 8 KiB socket window.
func largeChainFiles(t testing.TB) testpki.Files {
	t.Helper()
	_, leaf := testpki.LargeChain(600)
	if leaf.ChainBytes() < 28<<10 {
		t.Fatalf("large chain is only %d bytes", leaf.ChainBytes())
	}
	f, err := leaf.WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestLargeChainWithCurlAndOpenSSL serves the 600-SAN chain to curl and to
// s_client with TLS 1.3 and 1.2.
func TestLargeChainWithCurlAndOpenSSL(t *testing.T) {
	f := largeChainFiles(t)
	curlThrough(t, f)
	up := startUpstream(t, upperEcho)
	_, addr := moatServer(t, f, up.addr())
	for _, version := range []string{"-tls1_3", "-tls1_2"} {
		c := sClient(t, addr, f, version, "-quiet")
		fmt.Fprintln(c.stdin, "large chain "+version)
		c.waitFor(t, strings.ToUpper("large chain "+version), 10*time.Second)
	}
}
