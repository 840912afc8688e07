package main

// Process tests: the real binary, built into the test's temp dir, started
// as it runs in production, then sent signals or killed.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/auth"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testbolt"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testchrome"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testlog"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testsse"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/router"
)

const procSecret = "process-test-secret-process-test-secret!"

// buildBinary builds mcp-browser-proxy into the test's temp dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	bin := filepath.Join(t.TempDir(), "mcp-browser-proxy")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// -buildvcs=auto: stamp the commit as a release build does, even where
	// GOFLAGS turns stamping off (and skip it quietly where it cannot be).
	out, err := exec.CommandContext(ctx, gobin, "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is a running proxy process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // host:port it listens on
	base   string // http://addr
	dir    string // its data dir
	logs   *testlog.Buffer
	exited chan struct{} // closed when the process has exited
	err    error         // what Wait returned, once exited is closed
}

// startProxy runs `serve` on a free loopback port with data dir dir (a temp
// dir when empty) and waits until /health answers.
func startProxy(t *testing.T, bin, dir string, args ...string) *proc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	addr := freeAddr(t)
	p := &proc{t: t, addr: addr, base: "http://" + addr, dir: dir, logs: &testlog.Buffer{}, exited: make(chan struct{})}
	args = append([]string{"serve", "--addr", addr, "--data-dir", dir, "--jwt-secret", procSecret, "--log-format", "json"}, args...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("the proxy exited at start: %v\n%s", p.err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not start: %v\n%s", err, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the process.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// exitCode waits (up to within) for the process to exit and returns its
// exit code, -1 when a signal killed it.
func (p *proc) exitCode(within time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		p.t.Fatalf("the proxy did not exit\n%s", p.logs.String())
		return 0
	}
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitRefused waits until a new connection to the proxy is refused.
func (p *proc) waitRefused() {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			p.t.Fatalf("the proxy still accepts connections after the signal\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until the log has a line containing sub.
func (p *proc) waitLog(sub string) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logs.String(), sub) {
		if time.Now().After(deadline) {
			p.t.Fatalf("no log line with %q:\n%s", sub, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func procToken(t *testing.T, user string) string {
	t.Helper()
	secret, err := auth.SecretFromString(procSecret)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAuthenticator(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.Issue(user, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// openStore opens the store of a stopped proxy as serve does.
func openStore(t *testing.T, dir string) *router.BoltStore {
	t.Helper()
	secret, _ := auth.SecretFromString(procSecret)
	sealer, err := router.NewSealer(secret)
	if err != nil {
		t.Fatal(err)
	}
	s, err := router.OpenBolt(filepath.Join(dir, "registrations.db"), router.WithSealer(sealer))
	if err != nil {
		t.Fatalf("reopen the store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// post sends a JSON POST and returns the status and body.
func post(t *testing.T, url, tok string, hdr map[string]string, body string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data, err
}

// openSSE opens a legacy SSE session and returns its stream and its POST
// /message URL.
func openSSE(t *testing.T, base, tok string) (*testsse.Stream, string) {
	t.Helper()
	s := testsse.Open(t, base+"/sse", map[string]string{"Authorization": "Bearer " + tok})
	l, err := s.Until(60*time.Second, func(l string) bool { return strings.HasPrefix(l, "data:") })
	if err != nil {
		t.Fatalf("no endpoint event: %v", err)
	}
	return s, base + strings.TrimSpace(strings.TrimPrefix(l, "data:"))
}

const (
	rpcInit        = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}`
	rpcInitialized = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
)

func rpcCall(id int, tool string, args map[string]any) string {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": args}})
	return string(b)
}

// gatedPages serves a test page and /block?gate=NAME, which answers only
// once gate NAME is opened; seen gets NAME when a request arrives.
type gatedPages struct {
	url  string
	seen chan string
	mu   sync.Mutex
	open map[string]chan struct{}
}

func newGatedPages(t *testing.T, gates ...string) *gatedPages {
	g := &gatedPages{seen: make(chan string, 8), open: map[string]chan struct{}{}}
	for _, n := range gates {
		g.open[n] = make(chan struct{})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `<!doctype html><title>Gated</title><p>gated page</p>`)
	})
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("gate")
		g.mu.Lock()
		ch := g.open[name]
		g.mu.Unlock()
		g.seen <- name
		select {
		case <-ch:
		case <-time.After(60 * time.Second):
		case <-r.Context().Done():
		}
		io.WriteString(w, "unblocked-"+name)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	g.url = "http://" + l.Addr().String()
	return g
}

func (g *gatedPages) waitSeen(t *testing.T, name string) {
	t.Helper()
	select {
	case n := <-g.seen:
		if n != name {
			t.Fatalf("gate %q reached before %q", n, name)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the page never fetched gate %q", name)
	}
}

func (g *gatedPages) release(name string) { close(g.open[name]) }

// TestProcessSIGTERMDrains: on SIGTERM the proxy stops accepting at once,
// finishes a tool call in flight on a legacy SSE session (its answer comes
// on the stream) and one in flight on a streamable HTTP request, ends the
// SSE stream with a retry hint after the answer, closes the store and
// exits with code 0.
func TestProcessSIGTERMDrains(t *testing.T) {
	bin := buildBinary(t)
	chrome := testchrome.Start(t)
	pages := newGatedPages(t, "sse", "http")
	p := startProxy(t, bin, "", "--drain-timeout", "60s", "--call-timeout", "60s")
	tok := procToken(t, "alice")
	if st, _, body, err := post(t, p.base+"/api/register", tok, nil, fmt.Sprintf(`{"userId":"alice","browserURL":%q}`, chrome.URL)); err != nil || st != http.StatusCreated {
		t.Fatalf("register: %d %s %v", st, body, err)
	}
	slow := map[string]any{"function": "async () => (await fetch('/block?gate=GATE')).text()"}
	gated := func(gate string) map[string]any {
		return map[string]any{"function": strings.ReplaceAll(slow["function"].(string), "GATE", gate)}
	}

	// A legacy SSE session with a tool call that waits for gate "sse".
	sse, msgURL := openSSE(t, p.base, tok)
	sseRPC := func(msg, id string) {
		t.Helper()
		if st, _, body, err := post(t, msgURL, tok, nil, msg); err != nil || st != http.StatusAccepted {
			t.Fatalf("SSE message %.60s: %d %s %v", msg, st, body, err)
		}
		if id == "" {
			return
		}
		if l, err := sse.Until(60*time.Second, func(l string) bool { return strings.Contains(l, `"id":`+id+`,`) }); err != nil || strings.Contains(l, `"isError":true`) {
			t.Fatalf("SSE answer %s: %v %s", id, err, l)
		}
	}
	sseRPC(rpcInit, "1")
	sseRPC(rpcInitialized, "")
	sseRPC(rpcCall(2, "navigate_page", map[string]any{"url": pages.url + "/page"}), "2")
	if st, _, body, err := post(t, msgURL, tok, nil, rpcCall(3, "evaluate_script", gated("sse"))); err != nil || st != http.StatusAccepted {
		t.Fatalf("SSE slow call: %d %s %v", st, body, err)
	}
	pages.waitSeen(t, "sse")

	// A streamable session with a tool call in flight as an HTTP request.
	st, hdr, body, err := post(t, p.base+"/mcp", tok, nil, rpcInit)
	sid := hdr.Get("Mcp-Session-Id")
	if err != nil || st != http.StatusOK || sid == "" {
		t.Fatalf("streamable initialize: %d %s %v", st, body, err)
	}
	sh := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	if st, _, body, err := post(t, p.base+"/mcp", tok, sh, rpcInitialized); err != nil || st != http.StatusAccepted {
		t.Fatalf("streamable initialized: %d %s %v", st, body, err)
	}
	if st, _, body, err := post(t, p.base+"/mcp", tok, sh, rpcCall(2, "navigate_page", map[string]any{"url": pages.url + "/page"})); err != nil || st != http.StatusOK || strings.Contains(string(body), `"isError":true`) {
		t.Fatalf("streamable navigate: %d %s %v", st, body, err)
	}
	type answer struct {
		status int
		body   []byte
		err    error
	}
	inflight := make(chan answer, 1)
	go func() {
		st, _, body, err := post(t, p.base+"/mcp", tok, sh, rpcCall(3, "evaluate_script", gated("http")))
		inflight <- answer{st, body, err}
	}()
	pages.waitSeen(t, "http")

	p.signal(syscall.SIGTERM)
	p.waitRefused()
	if !p.running() {
		t.Fatalf("the proxy exited with two calls in flight: %v\n%s", p.err, p.logs.String())
	}
	pages.release("http")
	a := <-inflight
	if a.err != nil || a.status != http.StatusOK || !strings.Contains(string(a.body), "unblocked-http") {
		t.Fatalf("the HTTP call in flight: %d %s %v", a.status, a.body, a.err)
	}
	pages.release("sse")
	if _, err := sse.Until(60*time.Second, func(l string) bool { return strings.Contains(l, `"id":3,`) && strings.Contains(l, "unblocked-sse") }); err != nil {
		t.Fatalf("the SSE call in flight was not answered: %v\n%s", err, p.logs.String())
	}
	if _, err := sse.Until(60*time.Second, func(l string) bool { return strings.HasPrefix(l, "retry:") }); err != nil {
		t.Fatalf("no retry hint at the end of the SSE stream: %v", err)
	}
	if _, err := sse.Until(60*time.Second, func(string) bool { return false }); !errors.Is(err, io.EOF) {
		t.Fatalf("the SSE stream did not end: %v", err)
	}
	if code := p.exitCode(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, p.logs.String())
	}
	logs := p.logs.String()
	for _, want := range []string{"draining", "drained", "registration store closed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "drain timeout") {
		t.Errorf("the drain timed out:\n%s", logs)
	}
	if _, err := openStore(t, p.dir).Get(context.Background(), "alice"); err != nil {
		t.Errorf("alice's registration after the restart: %v", err)
	}
}

// TestProcessSecondSignalExitsAtOnce: a second SIGTERM during a long drain
// ends the process at once with exit code 1 and says why. The drain waits
// for a register request whose handler is reading a body that never comes.
func TestProcessSecondSignalExitsAtOnce(t *testing.T) {
	bin := buildBinary(t)
	p := startProxy(t, bin, "", "--drain-timeout", "10m")
	heldRequest(t, p, procToken(t, "alice"))

	p.signal(syscall.SIGTERM)
	p.waitLog("draining")
	p.waitRefused()
	if !p.running() {
		t.Fatalf("the drain did not wait for the request in flight: %v\n%s", p.err, p.logs.String())
	}
	second := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.exitCode(10 * time.Second); code != 1 {
		t.Fatalf("exit code %d after a second SIGTERM, want 1\n%s", code, p.logs.String())
	}
	if logs := p.logs.String(); !strings.Contains(logs, "second signal") || !strings.Contains(logs, "error: second signal") {
		t.Errorf("the log does not say why it stopped:\n%s", logs)
	}
	t.Logf("exited %v after the second signal", time.Since(second).Round(time.Millisecond))
}

// TestProcessSIGTERMFinishesHeldRequest: a request whose body is still
// coming when SIGTERM arrives is answered once it is complete, and the
// registration it made survives; exit code 0.
func TestProcessSIGTERMFinishesHeldRequest(t *testing.T) {
	bin := buildBinary(t)
	p := startProxy(t, bin, "", "--drain-timeout", "60s")
	conn, br := heldRequest(t, p, procToken(t, "alice"))

	p.signal(syscall.SIGTERM)
	p.waitLog("draining")
	p.waitRefused()
	if !p.running() {
		t.Fatalf("the drain did not wait for the request in flight: %v\n%s", p.err, p.logs.String())
	}
	if _, err := io.WriteString(conn, heldRest); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to the request in flight: %v\n%s", err, p.logs.String())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("the request in flight got %d", resp.StatusCode)
	}
	if code := p.exitCode(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.logs.String())
	}
	if _, err := openStore(t, p.dir).Get(context.Background(), "alice"); err != nil {
		t.Errorf("the registration made during the drain: %v", err)
	}
}

// heldBody is the register body heldRequest sends in two parts.
const (
	heldFirst = `{"userId":"alice",`
	heldRest  = `"browserURL":"http://127.0.0.1:9"}`
)

// heldRequest starts POST /api/register on a raw connection with only the
// first part of its body, and returns once the handler is reading the body
// (the server's 100 Continue), so the request is in flight. The reader
// returned reads the connection's next answer.
func heldRequest(t *testing.T, p *proc, tok string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	fmt.Fprintf(conn, "POST /api/register HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", p.addr, tok, len(heldFirst)+len(heldRest))
	br := bufio.NewReader(conn)
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("the handler did not start reading the body: %q %v", line, err)
	}
	if _, err := tp.ReadMIMEHeader(); err != nil { // up to the blank line
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, heldFirst); err != nil {
		t.Fatal(err)
	}
	return conn, br
}

// TestProcessSIGKILLKeepsAcknowledgedRegistrations: SIGKILL in the middle
// of a burst of registrations leaves a store that passes bbolt's check and
// holds every registration that was acknowledged with 201.
func TestProcessSIGKILLKeepsAcknowledgedRegistrations(t *testing.T) {
	bin := buildBinary(t)
	p := startProxy(t, bin, "")
	const total, killAfter, workers = 200, 60, 8
	var mu sync.Mutex
	acked := map[string]string{}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				user, url := fmt.Sprintf("burst%03d", i), fmt.Sprintf("http://127.0.0.1:%d", 1000+i) // every loopback address is one host: one port each
				st, _, _, err := post(t, p.base+"/api/register", procToken(t, user), nil, fmt.Sprintf(`{"userId":%q,"browserURL":%q}`, user, url))
				if err != nil {
					continue // killed
				}
				if st != http.StatusCreated {
					t.Errorf("register %s: %d", user, st)
					continue
				}
				mu.Lock()
				acked[user] = url
				if len(acked) == killAfter {
					_ = p.cmd.Process.Kill()
				}
				mu.Unlock()
			}
		})
	}
	for i := range total {
		if !p.running() {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if code := p.exitCode(10 * time.Second); code != -1 {
		t.Fatalf("the proxy was not killed (exit code %d)", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < killAfter {
		t.Fatalf("only %d registrations were acknowledged", len(acked))
	}

	if err := testbolt.Check(filepath.Join(p.dir, "registrations.db")); err != nil {
		t.Fatalf("the killed store: %v", err)
	}
	s := openStore(t, p.dir)
	for user, url := range acked {
		r, err := s.Get(context.Background(), user)
		if err != nil || r.BrowserURL != url {
			t.Errorf("acknowledged %s: %+v %v", user, r, err)
		}
	}
	n, _ := s.Count(context.Background())
	t.Logf("%d acknowledged, %d stored", len(acked), n)
}

// TestProcessDataDirFaults: a store that cannot be created (the data dir is
// a file, is on a read-only file system, or on a full one) stops the binary
// at start with exit code 1 and an error naming the path.
func TestProcessDataDirFaults(t *testing.T) {
	bin := buildBinary(t)
	run := func(t *testing.T, name string, args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%s: %v", name, err)
		}
		if ee != nil {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	serveArgs := func(dir string, secret bool) []string {
		a := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json"}
		if secret {
			a = append(a, "--jwt-secret", procSecret)
		}
		return a
	}
	check := func(t *testing.T, code int, out, path string) {
		t.Helper()
		if code != 1 || !strings.Contains(out, "error: ") || !strings.Contains(out, path) {
			t.Fatalf("exit code %d, output (want code 1 and an error naming %s):\n%s", code, path, out)
		}
		t.Logf("%s", strings.TrimSpace(out))
	}

	t.Run("file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "not-a-dir")
		if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, secret := range []bool{true, false} { // the store, then the secret fails first
			code, out := run(t, bin, serveArgs(file, secret)...)
			check(t, code, out, file)
		}
		code, out := run(t, bin, serveArgs(filepath.Join(file, "data"), true)...)
		check(t, code, out, filepath.Join(file, "data"))
	})

	// Read-only and full file systems need a mount: a tmpfs in a mount
	// namespace of the binary's own (unshare -m), gone when it exits.
	mountThenServe := func(t *testing.T, opts, prep string) (int, string, string) {
		t.Helper()
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("no unshare command")
		}
		dir := t.TempDir()
		if code, out := run(t, unshare, "-m", "--", "sh", "-c", `mount -t tmpfs -o size=64k tmpfs "$1"`, "sh", dir); code != 0 {
			t.Skipf("cannot mount a tmpfs in a mount namespace: %s", out)
		}
		script := `mount -t tmpfs -o ` + opts + ` tmpfs "$1" || exit 99; ` + prep + ` exec "$2" serve --addr 127.0.0.1:0 --data-dir "$1" --jwt-secret "$3" --log-format json`
		code, out := run(t, unshare, "-m", "--", "sh", "-c", script, "sh", dir, bin, procSecret)
		if code == 99 {
			t.Skipf("mount -o %s: %s", opts, out)
		}
		return code, out, dir
	}
	t.Run("read-only", func(t *testing.T) {
		code, out, dir := mountThenServe(t, "ro,size=64k", "")
		check(t, code, out, filepath.Join(dir, "registrations.db"))
		if !strings.Contains(out, "read-only") {
			t.Errorf("the error does not say the file system is read-only:\n%s", out)
		}
	})
	t.Run("full", func(t *testing.T) {
		code, out, dir := mountThenServe(t, "size=64k", `dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null;`)
		check(t, code, out, filepath.Join(dir, "registrations.db"))
		if !strings.Contains(out, "no space left") {
			t.Errorf("the error does not say the disk is full:\n%s", out)
		}
	})
}
