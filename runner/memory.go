package runner

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/moat-proxy/moat/memlimit"
)

// keepMemoryInLimit sets the Go runtime's soft memory limit from the
// container's (unless GOMEMLIMIT is set), says so once, and returns memory
// freed after a burst to the operating system until ctx ends.
func keepMemoryInLimit(ctx context.Context, log zerolog.Logger) {
	lim, err := memlimit.Apply()
	if err != nil {
		log.Warn().Err(err).Msg("cannot read the cgroup memory limit; no soft memory limit set")
	}
	ev := log.Info().Str("source", lim.Source.String())
	switch lim.Source {
	case memlimit.None:
		ev.Msg("no memory limit found; the Go runtime's soft memory limit is unset")
	case memlimit.Env:
		ev.Int64("memory_limit_bytes", lim.Bytes).Msg("soft memory limit from GOMEMLIMIT")
	default:
		ev.Int64("memory_limit_bytes", lim.Bytes).Int64("cgroup_limit_bytes", lim.Cgroup).Str("file", lim.File).
			Msgf("soft memory limit set to %.0f%% of the cgroup's", memlimit.Fraction*100)
	}
	go memlimit.ReturnFreed(ctx)
}
