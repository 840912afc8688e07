// Command mcp-browser-proxy serves MCP browser tools for a whole team: each
// user's IDE drives that user's own Chrome through one shared proxy.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "mcp-browser-proxy",
		Short:         "One MCP server that lets each user's IDE drive that user's own Chrome",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       readBuild().String(), // --version, as `version`
	}
	root.SetVersionTemplate("{{.Version}}")
	root.AddCommand(newServe(), newToken(), newRegister(), newVersion(), newAPIKey(), newConnect(), newDoctor(), newHealthcheck())
	return root
}

// envName returns the MBP_ twin of a flag: --jwt-secret -> MBP_JWT_SECRET.
func envName(flag string) string {
	return "MBP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// withEnv names each flag's env twin in its help and, before the command
// runs, fills every flag not given on the command line from its env twin.
// Flags win over env.
func withEnv(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		f.Usage += " [$" + envName(f.Name) + "]"
	})
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		var err error
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if err != nil || f.Changed {
				return
			}
			if v, ok := os.LookupEnv(envName(f.Name)); ok {
				if serr := c.Flags().Set(f.Name, v); serr != nil {
					err = fmt.Errorf("$%s: %w", envName(f.Name), serr)
				}
			}
		})
		if err == nil && prev != nil {
			err = prev(c, args)
		}
		return err
	}
	return cmd
}
