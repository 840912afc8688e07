package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

// clusterFlags configure shared mode (with --redis-url): how this
// instance is reached by the others and how they trust each other.
type clusterFlags struct {
	advertiseURL, secret string
	leaseTTL             time.Duration
}

// defaultLeaseTTL is --cluster-lease-ttl's default: an instance that dies
// is seen dead by the others within it.
const defaultLeaseTTL = 10 * time.Second

func addClusterFlags(fl *pflag.FlagSet, f *clusterFlags) {
	fl.StringVar(&f.advertiseURL, "advertise-url", "", "shared mode: the base URL at which the other instances reach this one, e.g. http://10.0.0.5:3000 (default: http://--addr, when --addr is not a wildcard address)")
	fl.StringVar(&f.secret, "cluster-secret", "", "shared mode: secret (at least 32 bytes) that signs the requests instances forward to each other (default: derived from the JWT secret; every instance needs the same)")
	fl.DurationVar(&f.leaseTTL, "cluster-lease-ttl", defaultLeaseTTL, "shared mode: lifetime of an instance's lease in Redis, renewed every third of it; when an instance dies its sessions end and its users move within it")
}

// advertise returns the base URL of --advertise-url, or the default from
// addr; scheme is http or https (--tls-cert).
func (f clusterFlags) advertise(addr, scheme string) (string, error) {
	if f.advertiseURL == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("--addr %q: %w", addr, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return "", fmt.Errorf("shared mode (--redis-url) needs the URL at which the other instances reach this one, and --addr %s listens on every address: set --advertise-url (MBP_ADVERTISE_URL), e.g. http://<this host's address>:<port>", addr)
		}
		return scheme + "://" + addr, nil
	}
	u, err := url.Parse(f.advertiseURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", fmt.Errorf("--advertise-url %q: give a base URL such as http://10.0.0.5:3000", f.advertiseURL)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "":
		return "", fmt.Errorf("--advertise-url %q: give scheme, host and port only (no path, query or credentials)", f.advertiseURL)
	}
	if h := u.Hostname(); net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
		return "", fmt.Errorf("--advertise-url %q: a wildcard address cannot be reached; give this host's address", f.advertiseURL)
	}
	return u.Scheme + "://" + u.Host, nil
}

// config builds shared mode's settings for store, which must be Redis; the
// instance ID is random per process.
//
// Instances that would not trust each other's forwarded requests (another
// secret) are refused; an unreachable Redis is not (the check waits for
// the next start).
func (f clusterFlags) config(ctx context.Context, store router.Store, addr, scheme string, jwtSecret []byte, sessionLifetime time.Duration, log zerolog.Logger) (proxy.ClusterConfig, string, error) {
	rs, ok := store.(*router.RedisStore)
	if !ok {
		return proxy.ClusterConfig{}, "", errors.New("shared mode needs --redis-url")
	}
	if f.leaseTTL < time.Second {
		return proxy.ClusterConfig{}, "", fmt.Errorf("--cluster-lease-ttl %s: use at least 1s", f.leaseTTL)
	}
	base, err := f.advertise(addr, scheme)
	if err != nil {
		return proxy.ClusterConfig{}, "", err
	}
	secret := jwtSecret
	if f.secret != "" {
		secret = []byte(f.secret)
	}
	signer, err := auth.NewForwardSigner(secret, 0)
	if err != nil {
		return proxy.ClusterConfig{}, "", fmt.Errorf("--cluster-secret: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	leases, err := router.NewLeases(rs, router.LeaseOptions{ID: id, URL: base, TTL: f.leaseTTL, SessionTTL: sessionLifetime + time.Hour})
	if err != nil {
		return proxy.ClusterConfig{}, "", err
	}
	err = leases.CheckForwardKey(ctx, signer.Fingerprint())
	if errors.Is(err, router.ErrUnavailable) {
		log.Warn().Err(err).Msg("the forwarding secret could not be checked against the other instances")
		err = nil
	}
	if err != nil {
		return proxy.ClusterConfig{}, "", err
	}
	return proxy.ClusterConfig{Leases: leases, Signer: signer}, base, nil
}
