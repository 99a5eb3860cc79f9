package proxy

import "crypto/tls"

// Limit names a bound moat enforces on new connections and unfinished
// handshakes: the value a refusal or an eviction is counted under. String
// gives the stable metric label. Which setting a person changes to move a
// limit is the caller's vocabulary (flags, a config file), given through
// Config.Explain; this package does not speak it.
type Limit uint8

// The limits. Refusals happen at accept; evictions cut an unfinished
// handshake to make room or to stay within the memory budget.
const (
	LimitConns               Limit = iota + 1 // Config.MaxConns
	LimitHandshakeRate                        // Config.HandshakeRate
	LimitHandshakes                           // Config.MaxHandshakes
	LimitHandshakesPerSource                  // Config.MaxHandshakesPerSource
	LimitHandshakeMemory                      // Config.HandshakeMemory
)

var limitLabels = [...]string{
	LimitConns: "max-conns", LimitHandshakeRate: "handshake-rate", LimitHandshakes: "max-handshakes",
	LimitHandshakesPerSource: "max-handshakes-per-source", LimitHandshakeMemory: "handshake-memory",
}

func (l Limit) String() string {
	if int(l) < len(limitLabels) && limitLabels[l] != "" {
		return limitLabels[l]
	}
	return "unknown"
}

// explain words a limit for a log line: the caller's words when it gave
// Config.Explain, else the label.
func (c *Config) explain(l Limit) string {
	if c.Explain != nil {
		if s := c.Explain(l); s != "" {
			return s
		}
	}
	return l.String() + " reached"
}

// renegotiationPolicy words the client-mode renegotiation policy that
// refused a server's request, for the error of that connection.
func (c *Config) renegotiationPolicy(r tls.RenegotiationSupport) string {
	if c.ExplainRenegotiation != nil {
		if s := c.ExplainRenegotiation(r); s != "" {
			return s
		}
	}
	return "the renegotiation policy"
}

// explainHandshake gives the caller's words for a failed handshake, if any.
func (c *Config) explainHandshake(err error) error {
	if c.ExplainHandshake != nil {
		return c.ExplainHandshake(err)
	}
	return err
}
