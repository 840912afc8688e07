package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
)

// listenPprof serves Go's profiles (net/http/pprof) on addr, which must be
// a loopback address: profiles show memory and goroutine stacks, with
// request data in them, so they never share the proxy's port or leave the
// machine. It returns the listener's address and a func that stops the
// server; with addr "" it does nothing.
func listenPprof(ctx context.Context, addr string, log zerolog.Logger) (string, func(), error) {
	if addr == "" {
		return "", func() {}, nil
	}
	if !proxy.IsLoopbackAddr(addr) {
		return "", nil, fmt.Errorf("--pprof %s: profiles are served on a loopback address only, e.g. --pprof 127.0.0.1:6060 (reach it with ssh -L or kubectl port-forward)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--pprof: listen on %s: %w", addr, err)
	}
	// "localhost" may resolve to anything: check what was bound.
	if !proxy.IsLoopbackAddr(ln.Addr().String()) {
		ln.Close()
		return "", nil, fmt.Errorf("--pprof %s bound %s, which is not loopback; use 127.0.0.1:PORT", addr, ln.Addr())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn().Err(err).Msg("pprof server stopped")
		}
	}()
	log.Info().Str("addr", "http://"+ln.Addr().String()+"/debug/pprof/").Msg("profiles served (loopback only)")
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
