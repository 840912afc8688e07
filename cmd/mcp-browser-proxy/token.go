package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

func newToken() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage bearer tokens"}
	var user, perms, toolsets, dataDir, secret, issuer, audience string
	var ttl time.Duration
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Print a bearer token (JWT) for a user on stdout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" {
				return fmt.Errorf("--user is required, e.g. --user alice")
			}
			ps, err := parsePermsFlag(cmd, perms)
			if err != nil {
				return err
			}
			var sets []string // nil: no toolsets claim, every toolset the proxy offers
			if cmd.Flags().Changed("toolsets") {
				if sets, err = tools.ParseToolsets(strings.Split(toolsets, ",")); err != nil {
					return fmt.Errorf("--toolsets: %w", err)
				}
			}
			key, err := loadSecret(secret, dataDir, false)
			if err != nil {
				return err
			}
			a, err := auth.NewAuthenticatorWith(key, auth.Options{Issuer: issuer, Audience: audience})
			if err != nil {
				return err
			}
			tok, err := a.IssueWithToolsets(user, ps, sets, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	fl := issue.Flags()
	fl.StringVar(&user, "user", "", "user ID the token is for (its sub claim)")
	fl.StringVar(&perms, "perms", "", permsUsage)
	fl.StringVar(&toolsets, "toolsets", "all", "tool groups the token may use, comma-separated: all, or some of "+strings.Join(tools.Toolsets(), ",")+" (the proxy's --toolsets still bound them)")
	fl.DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime, e.g. 1h or 720h")
	fl.StringVar(&dataDir, "data-dir", "./data", "data directory of the proxy, where its generated secret is")
	fl.StringVar(&secret, "jwt-secret", "", "HS256 secret (default: the one in --data-dir)")
	fl.StringVar(&issuer, "jwt-issuer", "", "iss claim to put in the token; needed when the proxy runs with --jwt-issuer")
	fl.StringVar(&audience, "jwt-audience", "", "aud claim to put in the token; needed when the proxy runs with --jwt-audience")
	cmd.AddCommand(withEnv(issue))
	return cmd
}
