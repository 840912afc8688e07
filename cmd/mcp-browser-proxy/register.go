package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newRegister() *cobra.Command {
	var server, token, user, browserURL string
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register your Chrome with a running proxy (POST /api/register) and print the answer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" || user == "" {
				return fmt.Errorf("--token and --user are required")
			}
			body, _ := json.Marshal(map[string]string{"userId": user, "browserURL": browserURL})
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(server, "/")+"/api/register", bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("reach the proxy at %s: %w", server, err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(string(out)))
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("the proxy answered %s", resp.Status)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&server, "server", "http://127.0.0.1:3000", "base URL of the proxy")
	fl.StringVar(&token, "token", "", "your bearer token")
	fl.StringVar(&user, "user", "", "your user ID")
	fl.StringVar(&browserURL, "browser-url", "http://127.0.0.1:9222", "DevTools URL of your Chrome")
	return withEnv(cmd)
}
