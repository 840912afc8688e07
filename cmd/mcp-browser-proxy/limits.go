package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// limitFlags are the serve flags that keep one user from stalling or
// starving the others: the ceiling of caller-given timeouts.
type limitFlags struct {
	maxCallTimeout time.Duration
}

func addLimitFlags(fl *pflag.FlagSet, f *limitFlags) {
	fl.DurationVar(&f.maxCallTimeout, "max-call-timeout", tools.DefaultMaxCallTimeout, "ceiling of the timeout a tool call may ask for (navigate_page, new_page, wait_for); a larger one is refused")
}

// check refuses limit flags that make no sense.
func (f limitFlags) check() error {
	if f.maxCallTimeout < time.Second {
		return fmt.Errorf("--max-call-timeout %s: use at least 1s", f.maxCallTimeout)
	}
	return nil
}
