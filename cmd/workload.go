package cmd

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/moat-proxy/moat/certs"
)

// workloadOptions are the flags that take moat's certificate, key and
// trust bundle from the SPIFFE Workload API, in server and client mode.
type workloadOptions struct {
	use     bool
	addr    string
	timeout time.Duration
}

// defaultWorkloadTimeout is how long moat waits for its first SVID.
const defaultWorkloadTimeout = 30 * time.Second

func (w *workloadOptions) register(f *pflag.FlagSet) {
	f.BoolVar(&w.use, "use-workload-api", false, "take the certificate, key and trust bundle from the SPIFFE Workload API at $"+workloadapi.SocketEnv+" (rotated in place as the agent pushes new SVIDs)")
	f.StringVar(&w.addr, "use-workload-api-addr", "", "as --use-workload-api, at this address: unix:///path/to/agent.sock or tcp://IP:port")
	f.DurationVar(&w.timeout, "use-workload-api-timeout", defaultWorkloadTimeout, "how long to wait at start for the first SVID from the Workload API before exiting")
}

// enabled reports whether the Workload API is the certificate source.
func (w *workloadOptions) enabled() bool { return w.use || w.addr != "" }

// conflict is another certificate flag and whether it was given.
type conflict struct {
	flag string
	set  bool
}

// source checks the flags and starts the Workload API source; it returns
// (nil, nil) when the Workload API is not in use. Any flag in others that
// was given is refused: the Workload API is the only source of the
// certificate, key and trust bundle.
func (w *workloadOptions) source(log zerolog.Logger, others ...conflict) (*certs.Source, error) {
	if !w.enabled() {
		if w.timeout != defaultWorkloadTimeout {
			return nil, flagError("use-workload-api-timeout", "only applies with --use-workload-api or --use-workload-api-addr")
		}
		return nil, nil
	}
	flag := "use-workload-api"
	if !w.use {
		flag = "use-workload-api-addr"
	}
	for _, o := range others {
		if o.set {
			return nil, flagError(flag, "cannot be combined with --%s: the certificate, key and trust bundle all come from the Workload API", o.flag)
		}
	}
	if w.timeout <= 0 {
		return nil, flagError("use-workload-api-timeout", "must be positive")
	}
	addr := w.addr
	if addr == "" {
		env, ok := os.LookupEnv(workloadapi.SocketEnv)
		if !ok || env == "" {
			return nil, flagError(flag, "%s is not set; set it, or give --use-workload-api-addr unix:///path/to/agent.sock", workloadapi.SocketEnv)
		}
		if err := certs.CheckWorkloadAddr(env); err != nil {
			return nil, flagError(flag, "%s: %v", workloadapi.SocketEnv, err)
		}
		addr = env
	}
	src, err := certs.NewWorkloadSource(addr, w.timeout)
	if err != nil {
		return nil, flagError(flag, "%v", err)
	}
	log.Info().Str("workload_api", addr).Str("timeout", w.timeout.String()).Msg(certs.WaitingForSVID)
	return src, nil
}

// awaitFunc is what the runner waits for before serving: the first SVID of
// a Workload API source, nothing for others.
func awaitFunc(src *certs.Source) func(context.Context) error {
	if src == nil || !src.FromWorkloadAPI() {
		return nil
	}
	return src.Await
}

// workloadLogger logs what a Workload API source reports: each SVID taken
// into service, and the loss of the agent (once per loss).
func workloadLogger(log zerolog.Logger, src *certs.Source) func(error) {
	return func(err error) {
		var lost *certs.WorkloadLostError
		if errors.As(err, &lost) {
			log.Warn().Str("workload_api", lost.Addr).Time("not_after", src.NotAfter()).Err(lost.Err).
				Msg("lost the Workload API; serving the last SVID until it expires, reconnecting")
			return
		}
		if err != nil {
			log.Error().Err(err).Msg("Workload API update failed; the previous SVID stays in service")
			return
		}
		ev := log.Info().Time("not_after", src.NotAfter())
		if c := src.Certificate(); c != nil && c.Leaf != nil {
			ev = ev.Str("serial", c.Leaf.SerialNumber.Text(16))
			for _, u := range c.Leaf.URIs {
				ev = ev.Str("spiffe_id", u.String())
			}
		}
		ev.Msg("SVID from the Workload API in service")
	}
}
