// Command moat is a sidecar TLS termination proxy: it accepts TLS from
// clients, checks who they are, and relays the plaintext to a local upstream.
package main

import (
	"os"

	"github.com/moat-proxy/moat/cmd"
)

func main() {
	os.Exit(cmd.Execute())
}
