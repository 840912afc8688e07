package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/tools"
)

// storeFile is the bbolt file inside --data-dir, as serve opens it.
const storeFile = "registrations.db"

// apiKeyCommandTimeout bounds one apikey command's store work.
const apiKeyCommandTimeout = 30 * time.Second

// Flag help repeated across the apikey commands (permsUsage by token issue too).
const (
	dataDirUsage = "data directory of the proxy (its " + storeFile + ")"
	permsUsage   = "comma-separated permissions: browser:read, browser:write, browser:script, browser:all-tabs, admin (default: read, write, script)"
)

// parsePermsFlag parses the --perms flag of cmd. Left out, it asks for the
// default (nil). Given but naming no permission, it is an error rather than
// a credential that grants nothing or, read as "left out", everything.
func parsePermsFlag(cmd *cobra.Command, perms string) ([]string, error) {
	ps, err := auth.ParsePerms(perms)
	if err != nil {
		return nil, fmt.Errorf("--perms: %w", err)
	}
	if ps == nil && cmd.Flags().Changed("perms") {
		return nil, fmt.Errorf("--perms is empty: name at least one of %s, or leave --perms out for the default read, write, script",
			strings.Join(auth.AllPerms(), ", "))
	}
	return ps, nil
}

func newAPIKey() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apikey",
		Short: "Manage API keys for machines (CI, scripts), on a running proxy (--server) or in a stopped one's --data-dir",
		Long: "API keys are bearer credentials for machines: Authorization: Bearer mbp_<id>_<secret>.\n" +
			"The store keeps only the SHA-256 of each secret. With --server URL and --token these commands\n" +
			"use the running proxy's API (POST, GET and DELETE /api/apikeys); without, they open the store\n" +
			"in --data-dir directly, so the proxy using that directory must be stopped while they run,\n" +
			"or, with --redis-url, the shared Redis store, which running proxies read on every request:\n" +
			"they need not stop, and a revocation holds on every instance at once.",
	}
	cmd.AddCommand(newAPIKeyCreate(), newAPIKeyRevoke(), newAPIKeyList())
	return cmd
}

// toolsetsText shows a key's toolsets: all for nil, none for an empty list.
func toolsetsText(sets []string) string {
	switch {
	case sets == nil:
		return "all"
	case len(sets) == 0:
		return "none"
	}
	return strings.Join(sets, ",")
}

func newAPIKeyCreate() *cobra.Command {
	var user, perms, name, toolsets, dataDir string
	var rf remoteFlags
	var redis redisFlags
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an API key and print it on stdout (it is shown only this once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			remote, err := rf.remote()
			if err != nil {
				return err
			}
			if user == "" && !remote {
				return errors.New("--user is required, e.g. --user alice")
			}
			ps, err := parsePermsFlag(cmd, perms)
			if err != nil {
				return err
			}
			// names: nil, the flag left out: locally every toolset; the
			// running proxy gives the caller's own.
			var names, sets []string
			if cmd.Flags().Changed("toolsets") {
				names = strings.Split(toolsets, ",")
				if sets, err = tools.ParseToolsets(names); err != nil {
					return fmt.Errorf("--toolsets: %w", err)
				}
			}
			if remote {
				var out proxy.CreatedAPIKey
				req := proxy.CreateAPIKeyRequest{UserID: user, Perms: ps, Name: name, Toolsets: names}
				if err := rf.call(cmd.Context(), http.MethodPost, "/api/apikeys", req, &out); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), out.Key)
				fmt.Fprintf(cmd.ErrOrStderr(), "created API key %s for %s (%s; toolsets %s); store it now, it cannot be shown again\n",
					out.ID, out.UserID, strings.Join(out.Perms, ","), toolsetsText(out.Toolsets))
				return nil
			}
			key, rec, err := auth.NewAPIKeyWithToolsets(user, ps, sets, name)
			if err != nil {
				return err
			}
			err = withKeyStore(cmd.Context(), dataDir, redis, true, func(ctx context.Context, store router.APIKeyStore) error {
				return store.CreateAPIKey(ctx, rec)
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key)
			fmt.Fprintf(cmd.ErrOrStderr(), "created API key %s for %s (%s; toolsets %s); store it now, it cannot be shown again\n",
				rec.ID, rec.UserID, strings.Join(rec.Perms, ","), toolsetsText(rec.Toolsets))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&user, "user", "", "user ID the key acts as (with --server: default the token's user)")
	fl.StringVar(&perms, "perms", "", permsUsage)
	fl.StringVar(&name, "name", "", "label shown by `apikey list`, e.g. ci")
	fl.StringVar(&toolsets, "toolsets", "all", "tool groups the key may use, comma-separated: all, or some of "+strings.Join(tools.Toolsets(), ",")+
		" (the proxy's --toolsets still bound them; with --server, left out: the --token's own)")
	fl.StringVar(&dataDir, "data-dir", "./data", dataDirUsage)
	addRedisFlags(fl, &redis)
	rf.add(cmd)
	return withEnv(cmd)
}

func newAPIKeyRevoke() *cobra.Command {
	var dataDir string
	var rf remoteFlags
	var redis redisFlags
	cmd := &cobra.Command{
		Use:   "revoke <id>",
		Short: "Revoke an API key by its ID (as `apikey list` shows it); the proxy refuses it from its next request on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if auth.IsAPIKey(id) {
				// The whole key was given: use its ID part, never echo it.
				kid, _, err := auth.ParseAPIKey(id)
				if err != nil {
					return errors.New("the argument looks like an API key but is malformed; give the key ID from `apikey list`")
				}
				id = kid
			}
			if !auth.ValidAPIKeyID(id) {
				return errors.New("not an API key ID: give the 16 hex digits that `apikey list` shows in its ID column")
			}
			remote, err := rf.remote()
			if err != nil {
				return err
			}
			if remote {
				if err := rf.call(cmd.Context(), http.MethodDelete, "/api/apikeys/"+id, nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked API key %s\n", id)
				return nil
			}
			err = withKeyStore(cmd.Context(), dataDir, redis, false, func(ctx context.Context, store router.APIKeyStore) error {
				return store.RevokeAPIKey(ctx, id)
			})
			if errors.Is(err, auth.ErrAPIKeyNotFound) && redis.shared() {
				return fmt.Errorf("no API key %s in the Redis of --redis-url (prefix %s); see `mcp-browser-proxy apikey list` with the same --redis-url", id, redis.prefix)
			}
			if errors.Is(err, auth.ErrAPIKeyNotFound) {
				return fmt.Errorf("no API key %s in %s; see `mcp-browser-proxy apikey list --data-dir %s`", id, dataDir, dataDir)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked API key %s\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./data", dataDirUsage)
	addRedisFlags(cmd.Flags(), &redis)
	rf.add(cmd)
	return withEnv(cmd)
}

func newAPIKeyList() *cobra.Command {
	var user, dataDir string
	var rf remoteFlags
	var redis redisFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List API keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user != "" {
				if err := auth.ValidateUserID(user); err != nil {
					return fmt.Errorf("--user: %w", err)
				}
			}
			remote, err := rf.remote()
			if err != nil {
				return err
			}
			var keys []auth.APIKey
			if remote {
				// The proxy answers the caller's keys, or an admin's every key.
				var infos []proxy.APIKeyInfo
				if err := rf.call(cmd.Context(), http.MethodGet, "/api/apikeys", nil, &infos); err != nil {
					return err
				}
				for _, k := range infos {
					if user == "" || k.UserID == user {
						keys = append(keys, auth.APIKey{ID: k.ID, UserID: k.UserID, Perms: k.Perms, Name: k.Name, Toolsets: k.Toolsets, CreatedAt: k.CreatedAt, LastUsed: k.LastUsed})
					}
				}
			} else {
				err = withKeyStore(cmd.Context(), dataDir, redis, false, func(ctx context.Context, store router.APIKeyStore) error {
					var err error
					keys, err = store.ListAPIKeys(ctx, user)
					return err
				})
			}
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tPERMS\tTOOLSETS\tNAME\tCREATED\tLAST USED")
			for _, k := range keys {
				last := "never"
				if !k.LastUsed.IsZero() {
					last = k.LastUsed.UTC().Format(time.RFC3339)
				}
				name := k.Name
				if name == "" {
					name = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.UserID, strings.Join(k.Perms, ","), toolsetsText(k.Toolsets), name,
					k.CreatedAt.UTC().Format(time.RFC3339), last)
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&user, "user", "", "only this user's keys")
	fl.StringVar(&dataDir, "data-dir", "./data", dataDirUsage)
	addRedisFlags(fl, &redis)
	rf.add(cmd)
	return withEnv(cmd)
}

// withKeyStore opens the store of an apikey command, runs fn on it with a
// context bounded by apiKeyCommandTimeout, and closes it: the Redis of
// --redis-url (shared with running proxies, which see the change at once),
// else the bbolt file in dataDir. Unless create is set, a missing bbolt
// file is an error rather than a new empty file; one held by a running
// proxy gives an error saying to stop it.
func withKeyStore(ctx context.Context, dataDir string, rf redisFlags, create bool, fn func(context.Context, router.APIKeyStore) error) error {
	ctx, cancel := context.WithTimeout(ctx, apiKeyCommandTimeout)
	defer cancel()
	if rf.shared() {
		store, err := rf.open(nil) // API keys are hashes: nothing to unseal
		if err != nil {
			return err
		}
		defer store.Close()
		if err := store.Ping(ctx); err != nil {
			return fmt.Errorf("%w; check --redis-url and that Redis is up", err)
		}
		return fn(ctx, store)
	}
	path := filepath.Join(dataDir, storeFile)
	if !create {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no store at %s: check --data-dir (it must be the proxy's)", path)
		}
	}
	store, err := router.OpenBolt(path)
	if router.IsLocked(err) {
		return fmt.Errorf("the store %s is in use, most likely by a running proxy: apikey commands open it directly, so stop the proxy using --data-dir %s, run this again, then restart the proxy; or give --server URL and --token to use the running proxy's API", path, dataDir)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	return fn(ctx, store)
}
