package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
)

// remoteFlags are the flags of an apikey command that talks to a running
// proxy instead of opening its store.
type remoteFlags struct {
	server, token string
}

func (r *remoteFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.server, "server", "", "URL of a running proxy, e.g. http://127.0.0.1:8080: use its API instead of opening the store in --data-dir")
	cmd.Flags().StringVar(&r.token, "token", "", "bearer token or API key for --server")
}

// remote reports whether the command talks to a running proxy; it checks
// the flags that go with --server.
func (r *remoteFlags) remote() (bool, error) {
	if r.server == "" {
		return false, nil
	}
	u, err := url.Parse(r.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false, fmt.Errorf("--server %q: give the proxy's base URL, e.g. http://127.0.0.1:8080", r.server)
	}
	if r.token == "" {
		return false, errors.New("--server needs --token (or $MBP_TOKEN): a token or API key of the user, or of an admin")
	}
	return true, nil
}

// call sends method path with body (JSON, nil for none) to the proxy and
// decodes a 2xx answer into out (nil: ignored). An error answer becomes an
// error with the proxy's code and message; the token is never in it.
func (r *remoteFlags) call(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, apiKeyCommandTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(r.server, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reach the proxy at %s: %w", r.server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the proxy's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e proxy.APIError
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("the proxy refused (%d %s): %s", resp.StatusCode, e.Code, e.Message)
		}
		return fmt.Errorf("the proxy answered %s", resp.Status)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode the proxy's answer: %w", err)
		}
	}
	return nil
}
