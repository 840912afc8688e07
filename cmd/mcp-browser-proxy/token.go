package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
)

func newToken() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage bearer tokens"}
	var user, perms, dataDir, secret, issuer, audience string
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
			key, err := loadSecret(secret, dataDir, false)
			if err != nil {
				return err
			}
			a, err := auth.NewAuthenticatorWith(key, auth.Options{Issuer: issuer, Audience: audience})
			if err != nil {
				return err
			}
			tok, err := a.Issue(user, ps, ttl)
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
	fl.DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime, e.g. 1h or 720h")
	fl.StringVar(&dataDir, "data-dir", "./data", "data directory of the proxy, where its generated secret is")
	fl.StringVar(&secret, "jwt-secret", "", "HS256 secret (default: the one in --data-dir)")
	fl.StringVar(&issuer, "jwt-issuer", "", "iss claim to put in the token; needed when the proxy runs with --jwt-issuer")
	fl.StringVar(&audience, "jwt-audience", "", "aud claim to put in the token; needed when the proxy runs with --jwt-audience")
	cmd.AddCommand(withEnv(issue))
	return cmd
}
