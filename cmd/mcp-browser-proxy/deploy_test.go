package main

// Lints of deploy/ and the root Dockerfile (Docker and Kubernetes cannot run
// here): every file parses, names real serve flags, probes real routes and
// ports, and uses metric names the proxy exports. nginx -t, promtool and
// systemd-analyze run when installed, else the test says it skipped them.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

const deployDir = "../../deploy"

// serveEnvTwins is the MBP_ twin of every serve flag.
func serveEnvTwins() map[string]string {
	twins := map[string]string{}
	newServe().Flags().VisitAll(func(f *pflag.Flag) { twins[envName(f.Name)] = f.Name })
	return twins
}

// envRefs finds the MBP_ names a deploy file sets or mentions.
var envRefs = regexp.MustCompile(`\bMBP_[A-Z0-9_]+\b`)

// flagRefs finds the long flags a deploy file passes to serve.
var flagRefs = regexp.MustCompile(`(?:^|[\s"'\[,])--([a-z][a-z0-9-]+)`)

// deployFiles lists every file under deploy/ and the Dockerfile.
func deployFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(deployDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.yml") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(files, "../../Dockerfile")
}

// TestDeployEnvAndFlagsAreServeFlags: every MBP_ variable named in deploy/
// and the Dockerfile is the env twin of a real serve flag (or of the
// healthcheck's), and every --flag given to serve exists.
func TestDeployEnvAndFlagsAreServeFlags(t *testing.T) {
	twins := serveEnvTwins()
	other := map[string]bool{}
	for _, c := range []flagged{newHealthcheck(), newTokenIssueForLint()} {
		c.Flags().VisitAll(func(f *pflag.Flag) { other[envName(f.Name)] = true; other["--"+f.Name] = true })
	}
	seen := 0
	for _, p := range deployFiles(t) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range envRefs.FindAllString(string(b), -1) {
			seen++
			if _, ok := twins[name]; !ok && !other[name] {
				t.Errorf("%s names %s, which is no serve flag's env twin (serve --help lists them)", p, name)
			}
		}
		if strings.HasSuffix(p, ".json") {
			continue
		}
		for _, m := range flagRefs.FindAllStringSubmatch(string(b), -1) {
			name := m[1]
			if _, ok := twins[envName(name)]; ok || other["--"+name] || knownNonServeFlags[name] {
				continue
			}
			t.Errorf("%s passes --%s, which serve does not have", p, name)
		}
	}
	if seen < 10 {
		t.Fatalf("only %d MBP_ names found: is the deploy dir where the test looks (%s)?", seen, deployDir)
	}
}

// flagged is a command the lint reads flags from.
type flagged interface{ Flags() *pflag.FlagSet }

func newTokenIssueForLint() flagged {
	tok := newToken()
	for _, c := range tok.Commands() {
		if c.Name() == "issue" {
			return c
		}
	}
	return tok
}

// knownNonServeFlags are flags of other programs that deploy files name
// (docker, kubectl, openssl, promtool, systemd-run), so the flag lint skips them.
var knownNonServeFlags = map[string]bool{
	"build-arg": true, "target": true, "from-literal": true, "dry-run": true, "pipe": true,
	"interval": true, "timeout": true, "start-period": true, "retries": true, "appendonly": true,
	"tags": true, "always": true, "dirty": true, "no-install-recommends": true, "system": true,
	"uid": true, "home-dir": true, "shell": true, "from": true, "chown": true, "now": true,
	"build": true, "help": true, "trimpath": true, "buildvcs": true, "ldflags": true, "mode": true, "user": true, "perms": true, "ttl": true,
	"managed-browsers": true, // issue 11's managed browsers: the managed target's documented run flag
}

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

// dig walks a parsed YAML tree along keys (a number indexes a list).
func dig(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestKubernetesManifests: every manifest parses and has its kind's
// required keys; the probes hit /health and /ready on the container port,
// the Service targets it, the ConfigMap and Secret keys are serve env twins,
// the pod runs as non-root with a read-only root fs, and the selectors match.
func TestKubernetesManifests(t *testing.T) {
	twins := serveEnvTwins()
	kinds := map[string]map[string]any{}
	files, _ := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	for _, p := range files {
		for _, doc := range yamlDocs(t, p) {
			kind, _ := doc["kind"].(string)
			if kind == "" || doc["apiVersion"] == nil {
				t.Errorf("%s: a document without kind or apiVersion", p)
				continue
			}
			if kind != "Kustomization" && dig(doc, "metadata", "name") == nil {
				t.Errorf("%s: %s without metadata.name", p, kind)
			}
			kinds[kind] = doc
		}
	}
	for _, k := range []string{"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "PersistentVolumeClaim", "Kustomization"} {
		if kinds[k] == nil {
			t.Fatalf("no %s among the manifests", k)
		}
	}
	// The kustomization lists every manifest.
	var listed []string
	for _, r := range dig(kinds["Kustomization"], "resources").([]any) {
		listed = append(listed, r.(string))
	}
	for _, p := range files {
		if b := filepath.Base(p); b != "kustomization.yaml" && !slices.Contains(listed, b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}

	dep := kinds["Deployment"]
	spec := dig(dep, "spec", "template", "spec")
	c := dig(spec, "containers", 0)
	portName, _ := dig(c, "ports", 0, "name").(string)
	port, _ := dig(c, "ports", 0, "containerPort").(int)
	cm := dig(kinds["ConfigMap"], "data").(map[string]any)
	if addr, _ := cm["MBP_ADDR"].(string); !strings.HasSuffix(addr, fmt.Sprintf(":%d", port)) {
		t.Errorf("containerPort %d is not the port of MBP_ADDR %q", port, addr)
	}
	routes := map[string]bool{"/health": true, "/ready": true} // routes the probes may use (proxy/server.go)
	for probe, want := range map[string]string{"livenessProbe": "/health", "readinessProbe": "/ready", "startupProbe": "/health"} {
		path, _ := dig(c, probe, "httpGet", "path").(string)
		pp := dig(c, probe, "httpGet", "port")
		if path != want || !routes[path] {
			t.Errorf("%s probes %q, want %s", probe, path, want)
		}
		if pp != portName && pp != port {
			t.Errorf("%s probes port %v, not the container's %s/%d", probe, pp, portName, port)
		}
	}
	if tp := dig(kinds["Service"], "spec", "ports", 0, "targetPort"); tp != portName && tp != port {
		t.Errorf("Service targets port %v, not the container's %s/%d", tp, portName, port)
	}
	sel := dig(dep, "spec", "selector", "matchLabels").(map[string]any)
	labels := dig(dep, "spec", "template", "metadata", "labels").(map[string]any)
	for name, sels := range map[string]any{
		"Service": dig(kinds["Service"], "spec", "selector"), "PodDisruptionBudget": dig(kinds["PodDisruptionBudget"], "spec", "selector", "matchLabels"),
		"Deployment": sel,
	} {
		for k, v := range sels.(map[string]any) {
			if labels[k] != v {
				t.Errorf("%s selects %s=%v, which the pod template does not carry", name, k, v)
			}
		}
	}
	for k := range cm {
		if _, ok := twins[k]; !ok {
			t.Errorf("ConfigMap key %s is no serve env twin", k)
		}
	}
	for k := range dig(kinds["Secret"], "stringData").(map[string]any) {
		if _, ok := twins[k]; !ok {
			t.Errorf("Secret key %s is no serve env twin", k)
		}
	}
	if dig(spec, "securityContext", "runAsNonRoot") != true || dig(c, "securityContext", "readOnlyRootFilesystem") != true ||
		dig(c, "securityContext", "allowPrivilegeEscalation") != false || dig(c, "securityContext", "capabilities", "drop", 0) != "ALL" {
		t.Errorf("container securityContext is not non-root, read-only, no privilege escalation, no capabilities: %v %v", dig(spec, "securityContext"), dig(c, "securityContext"))
	}
	if dig(c, "resources", "requests", "cpu") == nil || dig(c, "resources", "requests", "memory") == nil {
		t.Error("no resource requests")
	}
	// A read-only root needs writable /data (the store) and /tmp (per-session files).
	mounts := map[string]bool{}
	for _, m := range dig(c, "volumeMounts").([]any) {
		mounts[dig(m, "mountPath").(string)] = true
	}
	if !mounts[cm["MBP_DATA_DIR"].(string)] || !mounts["/tmp"] {
		t.Errorf("volume mounts %v lack MBP_DATA_DIR %v or /tmp", mounts, cm["MBP_DATA_DIR"])
	}
	// The drain fits in the grace period.
	drain, err := time.ParseDuration(cm["MBP_DRAIN_TIMEOUT"].(string))
	if grace, _ := dig(spec, "terminationGracePeriodSeconds").(int); err != nil || time.Duration(grace)*time.Second <= drain {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed MBP_DRAIN_TIMEOUT %v", dig(spec, "terminationGracePeriodSeconds"), cm["MBP_DRAIN_TIMEOUT"])
	}
	// The CHANGE_ME placeholder must be refused by serve, not run with.
	for k, v := range dig(kinds["Secret"], "stringData").(map[string]any) {
		if s, _ := v.(string); len(s) >= 32 {
			t.Errorf("Secret %s placeholder %q is long enough for serve to accept it", k, s)
		}
	}
}

// TestComposeFile: docker-compose.yml parses, builds the Dockerfile's
// runtime target, puts nginx in front with the nginx config of deploy/, and
// trusts nginx's network for X-Forwarded-For.
func TestComposeFile(t *testing.T) {
	docs := yamlDocs(t, filepath.Join(deployDir, "docker-compose.yml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	doc := docs[0]
	proxy, nginx := dig(doc, "services", "proxy"), dig(doc, "services", "nginx")
	if proxy == nil || nginx == nil {
		t.Fatal("services proxy and nginx missing")
	}
	if dig(proxy, "build", "target") != "runtime" || dig(proxy, "read_only") != true {
		t.Errorf("proxy: build target %v, read_only %v", dig(proxy, "build", "target"), dig(proxy, "read_only"))
	}
	env := dig(proxy, "environment").(map[string]any)
	subnet := dig(doc, "networks", "mbp", "ipam", "config", 0, "subnet")
	if env["MBP_TRUSTED_PROXIES"] != subnet {
		t.Errorf("MBP_TRUSTED_PROXIES %v is not nginx's network %v", env["MBP_TRUSTED_PROXIES"], subnet)
	}
	vols := fmt.Sprint(dig(nginx, "volumes"))
	if !strings.Contains(vols, "./nginx/mcp-browser-proxy.conf:/etc/nginx/conf.d/") {
		t.Errorf("nginx does not mount deploy/nginx/mcp-browser-proxy.conf: %s", vols)
	}
	if !strings.Contains(fmt.Sprint(dig(proxy, "healthcheck", "test")), "healthcheck") {
		t.Error("proxy has no healthcheck")
	}
	// One proxy on its bbolt store; shared mode is docker-compose.shared.yml.
	if dig(doc, "services", "redis") != nil || env["MBP_REDIS_URL"] != nil {
		t.Error("the single-instance compose file has Redis; shared mode belongs in docker-compose.shared.yml")
	}
	b, _ := os.ReadFile(filepath.Join(deployDir, "nginx", "mcp-browser-proxy.conf"))
	if !strings.Contains(string(b), "server proxy:3000") || !strings.HasSuffix(env["MBP_ADDR"].(string), ":3000") {
		t.Error("nginx's upstream is not the proxy service's port")
	}
}

// TestDockerfile: both targets exist, each runs as a non-root USER, the
// build is static (CGO_ENABLED=0, -trimpath), the data volume, port and
// health check are declared, the managed target installs Debian's chromium,
// and the default target (the last) is the distroless one.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	type stage struct {
		name, base string
		lines      []string
	}
	var stages []*stage
	sc := bufio.NewScanner(bytes.NewReader(b))
	var cont string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		fields := strings.Fields(line)
		if strings.EqualFold(fields[0], "FROM") {
			st := &stage{base: fields[1]}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				st.name = fields[3]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	byName := map[string]*stage{}
	for _, s := range stages {
		byName[s.name] = s
	}
	has := func(s *stage, prefix, contains string) bool {
		for _, l := range s.lines {
			if strings.HasPrefix(strings.ToUpper(l), prefix) && strings.Contains(l, contains) {
				return true
			}
		}
		return false
	}
	build := byName["build"]
	if build == nil || !has(build, "RUN", "CGO_ENABLED=0") || !has(build, "RUN", "-trimpath") || !has(build, "RUN", "-ldflags") {
		t.Fatal("no build stage with CGO_ENABLED=0 go build -trimpath -ldflags")
	}
	last := stages[len(stages)-1]
	if last.name != "runtime" || !strings.Contains(last.base, "distroless/static") {
		t.Errorf("the default (last) target is %s on %s, want runtime on distroless static", last.name, last.base)
	}
	managed := byName["managed"]
	if managed == nil || !strings.Contains(managed.base, "debian") || !has(managed, "RUN", "apt-get install") || !has(managed, "RUN", " chromium") {
		t.Fatal("no managed target on Debian with Debian's chromium")
	}
	for _, s := range []*stage{managed, last} {
		var user string
		for _, l := range s.lines {
			if f := strings.Fields(l); strings.EqualFold(f[0], "USER") {
				user = f[1]
			}
		}
		if u, _, _ := strings.Cut(user, ":"); user == "" || u == "0" || u == "root" {
			t.Errorf("target %s runs as %q, want a non-root USER", s.name, user)
		}
		for _, want := range []string{"VOLUME", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT"} {
			if !has(s, want, "") {
				t.Errorf("target %s lacks %s", s.name, want)
			}
		}
		if !has(s, "VOLUME", "/data") || !has(s, "ENV", "MBP_DATA_DIR=/data") || !has(s, "EXPOSE", "3000") || !has(s, "ENV", "MBP_ADDR=0.0.0.0:3000") {
			t.Errorf("target %s: /data volume, MBP_DATA_DIR, port 3000 and MBP_ADDR do not agree", s.name)
		}
		if !has(s, "HEALTHCHECK", `"healthcheck"`) {
			t.Errorf("target %s's HEALTHCHECK does not run the binary's healthcheck (no shell on distroless)", s.name)
		}
	}
	ignore, err := os.ReadFile("../../.dockerignore")
	if err != nil || !strings.Contains(string(ignore), ".git") || !strings.Contains(string(ignore), "data") {
		t.Errorf(".dockerignore missing or does not leave out .git and data: %v", err)
	}
}

// TestNginxConfig: the stream routes have buffering off and long reads,
// the tunnel passes the WebSocket upgrade, the upstream gets HTTP/1.1 and
// the forwarded headers; then nginx -t checks the whole file.
func TestNginxConfig(t *testing.T) {
	for _, name := range []string{"mcp-browser-proxy.conf", "mcp-browser-proxy.shared.conf"} {
		t.Run(name, func(t *testing.T) { testNginxConfig(t, filepath.Join(deployDir, "nginx", name)) })
	}
}

func testNginxConfig(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for _, want := range []string{
		"proxy_http_version 1.1;",
		"proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;",
		"proxy_set_header X-Forwarded-Proto $scheme;",
		"proxy_set_header Host              $host;",
		"proxy_set_header Upgrade           $http_upgrade;",
		"proxy_set_header Connection        $connection_upgrade;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx config lacks %q", want)
		}
	}
	for _, loc := range []string{"/sse", "/mcp", "/api/tunnel"} {
		block := locationBlock(conf, loc)
		if block == "" {
			t.Errorf("no location = %s", loc)
			continue
		}
		if !strings.Contains(block, "proxy_buffering off;") {
			t.Errorf("location %s buffers", loc)
		}
		m := regexp.MustCompile(`proxy_read_timeout (\d+)h;`).FindStringSubmatch(block)
		if m == nil || m[1] == "0" {
			t.Errorf("location %s has no proxy_read_timeout in hours", loc)
		}
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not on PATH (apt-get install nginx): skipped nginx -t; the text checks above passed")
	}
	// nginx -t resolves upstream names and loads the certificates: point
	// them at this machine and a throwaway pair.
	dir := t.TempDir()
	writeSelfSigned(t, dir)
	conf = upstreamServer.ReplaceAllString(conf, "server 127.0.0.1:3000;")
	conf = strings.ReplaceAll(conf, "/etc/nginx/certs/", dir+"/")
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf("pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\nhttp {\n  access_log off;\n  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n  include %s/site.conf;\n}\n",
		dir, dir, dir, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "test is successful") {
		t.Errorf("nginx -t said:\n%s", out)
	}
}

// upstreamServer matches the compose service names nginx's upstreams name.
var upstreamServer = regexp.MustCompile(`server proxy(?:-[a-z])?:3000;`)

// locationBlock returns the body of "location = path { ... }".
func locationBlock(conf, path string) string {
	i := strings.Index(conf, "location = "+path+" {")
	if i < 0 {
		return ""
	}
	j := strings.Index(conf[i:], "}")
	return conf[i : i+j]
}

// writeSelfSigned writes tls.crt and tls.key for nginx -t.
func writeSelfSigned(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proxy.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"proxy.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// TestSystemdUnit: the unit runs serve unprivileged and hardened, with its
// state in StateDirectory as --data-dir; systemd-analyze verify checks it
// when present.
func TestSystemdUnit(t *testing.T) {
	path := filepath.Join(deployDir, "systemd", "mcp-browser-proxy.service")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "StateDirectory": "mcp-browser-proxy", "ExecStart": "/usr/local/bin/mcp-browser-proxy serve",
		"CapabilityBoundingSet": "", "KillSignal": "SIGTERM",
	} {
		if !slices.Contains(keys[k], want) {
			t.Errorf("%s=%q missing (have %q)", k, want, keys[k])
		}
	}
	if !slices.Contains(keys["Environment"], "MBP_DATA_DIR=/var/lib/mcp-browser-proxy") {
		t.Error("MBP_DATA_DIR is not the StateDirectory")
	}
	if !slices.ContainsFunc(keys["Environment"], func(v string) bool { return strings.HasPrefix(v, "MBP_ADDR=127.0.0.1:") }) {
		t.Error("the unit does not listen on loopback behind its reverse proxy")
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not on PATH: skipped systemd-analyze verify")
	}
	// verify wants the ExecStart binary to exist: a copy of the unit that
	// points at a stand-in.
	dir := t.TempDir()
	bin := filepath.Join(dir, "mcp-browser-proxy")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/mcp-browser-proxy", bin)
	up := filepath.Join(dir, "mcp-browser-proxy.service")
	os.WriteFile(up, []byte(unit), 0o644)
	out, err := exec.Command(sa, "verify", up).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "System has not been booted with systemd") || strings.Contains(string(out), "Failed to connect to bus") {
			t.Skipf("systemd-analyze verify cannot run here: %s", out)
		}
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify warns:\n%s", out)
	}
}

// metricName finds the proxy's metric names in PromQL.
var metricName = regexp.MustCompile(`\b(?:mcp|mbp)_[a-z_]+\b`)

// exportedMetrics starts serve in-process (--auth none, --metrics-public),
// makes one of each event that creates series (a request, an MCP session
// with a tool call, a browser registration that fails), and returns the
// metric names of GET /metrics over HTTP.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	s := startServe(t, t.TempDir(), "--auth", "none", "--metrics-public", "--max-reconnects", "1")
	post := func(path, sid string, body any) *http.Response {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, s.base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := post("/mcp", "", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
		"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "lint", "version": "0"}}})
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("initialize: %d without a session", resp.StatusCode)
	}
	post("/mcp", sid, map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
	post("/mcp", sid, map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": "list_pages"}})
	// A browser nobody listens for: its state changes and reconnects count.
	post("/api/register", "", map[string]any{"userId": "local", "browserURL": "http://127.0.0.1:1"})
	names := map[string]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
				names[f[2]] = true
			}
		}
		resp.Body.Close()
		if names["mbp_browser_state_transitions_total"] && names["mcp_tool_executions_total"] || time.Now().After(deadline) {
			return names
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDashboardAndAlertsUseExportedMetrics: the Grafana JSON parses, and
// every metric name in its expressions and in the alert rules is one the
// proxy exports (a histogram's _bucket/_sum/_count of one it exports); the
// operators' mcp_ names are all there; promtool checks the rules, runs
// their unit tests and checks every dashboard expression as PromQL.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	for _, want := range []string{"mcp_connections_total", "mcp_connections_active", "mcp_tool_executions_total",
		"mcp_tool_duration_seconds", "mcp_sessions_active", "mcp_browser_connections", "mcp_limit_rejections_total",
		"mcp_auth_failures_total", "mcp_sessions_limit"} {
		if !exported[want] {
			t.Errorf("the proxy does not export %s", want)
		}
	}
	known := func(name string) bool {
		for _, suf := range []string{"", "_bucket", "_sum", "_count"} {
			if strings.HasSuffix(name, suf) && exported[strings.TrimSuffix(name, suf)] {
				return true
			}
		}
		return false
	}

	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "mcp-browser-proxy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana dashboard: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard without title, uid or panels")
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	used := map[string]bool{}
	check := func(where, expr string) {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q uses no proxy metric", where, expr)
		}
		for _, n := range names {
			used[strings.TrimSuffix(n, "_bucket")] = true
			if !known(n) {
				t.Errorf("%s: %s is not exported by the proxy", where, n)
			}
		}
	}
	for _, e := range exprs {
		check("grafana", e)
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			check("grafana variable", v.Definition)
		}
	}
	for _, want := range []string{"mcp_connections_total", "mcp_connections_active", "mcp_tool_executions_total", "mcp_tool_duration_seconds",
		"mcp_sessions_active", "mcp_browser_connections", "mcp_limit_rejections_total", "mcp_auth_failures_total"} {
		if !used[want] {
			t.Errorf("the dashboard shows no %s", want)
		}
	}

	rules := yamlDocs(t, filepath.Join(deployDir, "prometheus", "alerts.yml"))
	var alerts []string
	for _, g := range dig(rules[0], "groups").([]any) {
		for _, r := range dig(g, "rules").([]any) {
			alerts = append(alerts, dig(r, "alert").(string))
			if e := dig(r, "expr").(string); !strings.Contains(e, "up{") {
				check("alert "+dig(r, "alert").(string), e)
			}
		}
	}
	sort.Strings(alerts)
	for _, want := range []string{"MCPBrowsersFailed", "MCPConnectionFailures", "MCPSessionCapacity", "MCPToolErrorRate"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s among %v", want, alerts)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (apt-get install prometheus): skipped promtool check rules / test rules")
	}
	dir := filepath.Join(deployDir, "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every dashboard expression as a recording rule: promtool parses it.
	var rb strings.Builder
	rb.WriteString("groups:\n  - name: grafana\n    rules:\n")
	for i, e := range exprs {
		e = strings.NewReplacer("$__rate_interval", "5m", `"$instance"`, `".*"`).Replace(e)
		q, _ := json.Marshal(e)
		fmt.Fprintf(&rb, "      - record: grafana:panel_%d\n        expr: %s\n", i, q)
	}
	rf := filepath.Join(t.TempDir(), "grafana-rules.yml")
	os.WriteFile(rf, []byte(rb.String()), 0o600)
	if out, err := exec.Command(promtool, "check", "rules", rf).CombinedOutput(); err != nil {
		t.Errorf("a dashboard expression is not valid PromQL: %v\n%s", err, out)
	}
}

// TestNginxFrontsTheProxy runs the shipped nginx config for real (TLS on a
// free port, the upstream a proxy started in-process): the SSE endpoint
// event comes through unbuffered, X-Forwarded-For reaches the proxy (a
// second request of the same client is over --max-conns-per-ip 1), and the
// tunnel's WebSocket upgrade passes.
func TestNginxFrontsTheProxy(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not on PATH (apt-get install nginx): skipped the end-to-end run")
	}
	s := startServe(t, t.TempDir(), "--auth", "none", "--trusted-proxies", "127.0.0.1", "--max-conns-per-ip", "1")
	base := startNginx(t, nginx, "mcp-browser-proxy.conf", strings.TrimPrefix(s.base, "http://"))
	listen := strings.TrimPrefix(base, "https://")
	client := clientFrom(t, "127.0.0.2")

	// The endpoint event arrives while the stream stays open.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sse through nginx: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	got := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "/message?sessionId=") {
			got = true
			break
		}
	}
	if !got {
		t.Fatalf("no endpoint event through nginx before the stream ended or the bound: %v", sc.Err())
	}

	// The stream holds this client's one slot, and only this client's:
	// nginx forwarded each client's address (every hop is on loopback, so
	// the clients come from 127.0.0.2 and 127.0.0.3).
	for _, c := range []struct {
		from string
		want int
	}{{"127.0.0.2", http.StatusTooManyRequests}, {"127.0.0.3", http.StatusOK}} {
		r2, err := clientFrom(t, c.from).Get(base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != c.want {
			t.Errorf("a request from %s while 127.0.0.2 holds a stream: %d, want %d (X-Forwarded-For not passed?)", c.from, r2.StatusCode, c.want)
		}
	}
	resp.Body.Close()
	cancel()

	// The WebSocket upgrade of /api/tunnel passes (the slot is free again).
	d := websocket.Dialer{TLSClientConfig: insecureTLS(), HandshakeTimeout: 10 * time.Second}
	var ws *websocket.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		var wresp *http.Response
		ws, wresp, err = d.Dial("wss://"+listen+"/api/tunnel", nil)
		if err == nil {
			break
		}
		if wresp == nil || wresp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			code := 0
			if wresp != nil {
				code = wresp.StatusCode
			}
			t.Fatalf("WebSocket through nginx: %v (HTTP %d)", err, code)
		}
		time.Sleep(50 * time.Millisecond) // the SSE stream's slot is being released
	}
	ws.Close()
}

// startNginx runs deploy/nginx/<name> for real until the test ends: its
// TLS server only, on a free loopback port, with a throwaway certificate
// and its upstream servers replaced, in order, by upstreams. It returns
// the https:// base URL once nginx answers GET /health with 200.
func startNginx(t *testing.T, nginx, name string, upstreams ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "nginx", name))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeSelfSigned(t, dir)
	listen := freeAddr(t)
	conf := string(b)
	// Only the TLS server, on a free loopback port.
	if i := strings.Index(conf, "server {\n    listen 80;"); i >= 0 {
		j := strings.Index(conf[i:], "}\n")
		conf = conf[:i] + conf[i+j+2:]
	}
	n := 0
	conf = upstreamServer.ReplaceAllStringFunc(conf, func(string) string {
		n++
		if n > len(upstreams) {
			return "server 127.0.0.1:1;"
		}
		return "server " + upstreams[n-1] + ";"
	})
	if n != len(upstreams) {
		t.Fatalf("%s names %d upstream servers, the test gives %d", name, n, len(upstreams))
	}
	conf = strings.NewReplacer(
		"listen 443 ssl;", "listen "+listen+" ssl;",
		"listen [::]:443 ssl;", "",
		"/etc/nginx/certs/", dir+"/",
	).Replace(conf)
	os.WriteFile(filepath.Join(dir, "site.conf"), []byte(conf), 0o600)
	main := fmt.Sprintf("daemon off;\nmaster_process off;\npid %[1]s/nginx.pid;\nerror_log %[1]s/error.log;\nevents {}\nhttp {\n  access_log off;\n"+
		"  client_body_temp_path %[1]s/body;\n  proxy_temp_path %[1]s/proxy;\n  fastcgi_temp_path %[1]s/fcgi;\n  uwsgi_temp_path %[1]s/uwsgi;\n  scgi_temp_path %[1]s/scgi;\n  include %[1]s/site.conf;\n}\n", dir)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o600)
	cmd := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	client := clientFrom(t, "127.0.0.1")
	base := "https://" + listen
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				client.CloseIdleConnections()
				return base
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not come up: %v\n%s\n%s", err, out.String(), b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clientFrom is an HTTPS client whose connections come from the loopback
// address ip (Linux routes all of 127/8 to lo).
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS(), DialContext: d.DialContext}}
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } // the test's own self-signed pair

// composeVar matches compose's ${NAME}, ${NAME:?message} and kin.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}`)

// interpolate does compose's ${VAR...} substitution with vars.
func interpolate(s string, vars map[string]string) string {
	return composeVar.ReplaceAllStringFunc(s, func(m string) string { return vars[composeVar.FindStringSubmatch(m)[1]] })
}

// sharedEnvExample reads deploy/shared.env.example: NAME= lines.
func sharedEnvExample(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "shared.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			vars[k] = v
		}
	}
	return vars
}

// TestComposeSharedFile: docker-compose.shared.yml parses; it has Redis
// (persistent, password-protected, health-checked) and two proxies, each
// advertising its own service name, with the same JWT secret and store key
// from deploy/.env (required, not generated per container), a Redis URL
// naming the redis service with the password Redis is given, waiting for
// Redis to be healthy; nginx mounts the shared config, whose upstream is
// exactly the two proxies, hashed. Then Redis's command runs for real
// (when redis-server is installed): it refuses a short password, requires
// AUTH, has the persistence it claims, and the healthcheck passes.
func TestComposeSharedFile(t *testing.T) {
	docs := yamlDocs(t, filepath.Join(deployDir, "docker-compose.shared.yml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	doc := docs[0]
	services, _ := dig(doc, "services").(map[string]any)
	redis, nginx := services["redis"], services["nginx"]
	if redis == nil || nginx == nil {
		t.Fatalf("services redis and nginx missing: %v", services)
	}
	example := sharedEnvExample(t)
	for k, v := range example {
		if v != "" {
			t.Errorf("shared.env.example gives %s a value; leave it empty so that compose refuses to start until it is set", k)
		}
	}
	// Every variable compose interpolates is required and in the example.
	b, _ := os.ReadFile(filepath.Join(deployDir, "docker-compose.shared.yml"))
	for _, m := range composeVar.FindAllStringSubmatch(string(b), -1) {
		if _, ok := example[m[1]]; !ok || !strings.HasPrefix(m[0], "${"+m[1]+":?") {
			t.Errorf("%s: not a required variable (${%s:?message}) listed in shared.env.example", m[0], m[1])
		}
	}
	vars := map[string]string{"MBP_JWT_SECRET": "jwt-secret-of-the-test", "MBP_STORE_KEY": "store-key-of-the-test", "REDIS_PASSWORD": "0123456789abcdef0123456789abcdef"}

	var proxies []string
	for name, svc := range services {
		if dig(svc, "environment", "MBP_REDIS_URL") != nil {
			proxies = append(proxies, name)
		}
	}
	sort.Strings(proxies)
	if len(proxies) != 2 {
		t.Fatalf("proxies (services with MBP_REDIS_URL): %v, want two", proxies)
	}
	subnet := dig(doc, "networks", "mbp", "ipam", "config", 0, "subnet")
	advertised := map[string]string{}
	shared := map[string]map[any]bool{"MBP_JWT_SECRET": {}, "MBP_STORE_KEY": {}}
	for _, name := range proxies {
		svc := services[name]
		env := dig(svc, "environment").(map[string]any)
		if dig(svc, "build", "target") != "runtime" || dig(svc, "read_only") != true || !strings.Contains(fmt.Sprint(dig(svc, "healthcheck", "test")), "healthcheck") {
			t.Errorf("%s: build target %v, read_only %v, healthcheck %v", name, dig(svc, "build", "target"), dig(svc, "read_only"), dig(svc, "healthcheck", "test"))
		}
		if dig(svc, "depends_on", "redis", "condition") != "service_healthy" {
			t.Errorf("%s does not wait for Redis to be healthy: %v", name, dig(svc, "depends_on"))
		}
		if env["MBP_TRUSTED_PROXIES"] != subnet {
			t.Errorf("%s: MBP_TRUSTED_PROXIES %v is not nginx's network %v", name, env["MBP_TRUSTED_PROXIES"], subnet)
		}
		_, port, _ := strings.Cut(fmt.Sprint(env["MBP_ADDR"]), ":")
		if want := "http://" + name + ":" + port; env["MBP_ADVERTISE_URL"] != want {
			t.Errorf("%s advertises %v, want its own service name and MBP_ADDR's port: %s", name, env["MBP_ADVERTISE_URL"], want)
		}
		advertised[fmt.Sprint(env["MBP_ADVERTISE_URL"])] = name
		for k := range shared {
			shared[k][env[k]] = true
			if s, _ := env[k].(string); !strings.HasPrefix(s, "${"+k+":?") {
				t.Errorf("%s: %s is %q, not the required ${%s:?...} of deploy/.env (a per-container default would differ between the proxies)", name, k, s, k)
			}
		}
		u, err := url.Parse(interpolate(env["MBP_REDIS_URL"].(string), vars))
		if err != nil {
			t.Fatalf("%s: MBP_REDIS_URL: %v", name, err)
		}
		pw, _ := u.User.Password()
		if u.Scheme != "redis" || u.Hostname() != "redis" || u.Port() != "6379" || pw != vars["REDIS_PASSWORD"] {
			t.Errorf("%s: MBP_REDIS_URL %s does not name the redis service on 6379 with REDIS_PASSWORD", name, u.Redacted())
		}
	}
	if len(advertised) != 2 {
		t.Errorf("the proxies advertise %v: not two distinct URLs", advertised)
	}
	for k, v := range shared {
		if len(v) != 1 {
			t.Errorf("the proxies' %s differ: %v", k, v)
		}
	}

	// Redis: persistent, password from the same variable, health-checked.
	if img, _ := dig(redis, "image").(string); !strings.HasPrefix(img, "redis:") {
		t.Errorf("redis image %q", img)
	}
	if interpolate(fmt.Sprint(dig(redis, "environment", "REDIS_PASSWORD")), vars) != vars["REDIS_PASSWORD"] {
		t.Errorf("Redis's REDIS_PASSWORD %v is not the one in the proxies' MBP_REDIS_URL", dig(redis, "environment", "REDIS_PASSWORD"))
	}
	vol := fmt.Sprint(dig(redis, "volumes", 0))
	if name, _, _ := strings.Cut(vol, ":"); !strings.HasSuffix(vol, ":/data") || dig(doc, "volumes") == nil || !hasKey(dig(doc, "volumes"), name) {
		t.Errorf("redis's /data is not a named volume: %v", vol)
	}
	command, _ := dig(redis, "command").([]any)
	if len(command) != 3 || command[0] != "sh" || command[1] != "-c" {
		t.Fatalf("redis command %v: want [sh -c script]", command)
	}
	script := strings.ReplaceAll(command[2].(string), "$$", "$") // compose's escape
	health := dig(redis, "healthcheck", "test").([]any)
	if len(health) != 2 || health[0] != "CMD-SHELL" || !strings.Contains(health[1].(string), "redis-cli ping") {
		t.Fatalf("redis healthcheck %v", health)
	}
	checkRedisScript(t, script, strings.ReplaceAll(health[1].(string), "$$", "$"))

	// nginx: the shared config, after both proxies, whose upstream they are.
	if vols := fmt.Sprint(dig(nginx, "volumes")); !strings.Contains(vols, "./nginx/mcp-browser-proxy.shared.conf:/etc/nginx/conf.d/") {
		t.Errorf("nginx does not mount deploy/nginx/mcp-browser-proxy.shared.conf: %s", vols)
	}
	conf, err := os.ReadFile(filepath.Join(deployDir, "nginx", "mcp-browser-proxy.shared.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var servers []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server ([a-z0-9.-]+:\d+);`).FindAllStringSubmatch(string(conf), -1) {
		servers = append(servers, m[1])
	}
	var want []string
	for _, name := range proxies {
		want = append(want, strings.TrimPrefix(dig(services[name], "environment", "MBP_ADVERTISE_URL").(string), "http://"))
		if dig(nginx, "depends_on", name, "condition") != "service_healthy" {
			t.Errorf("nginx does not wait for %s", name)
		}
	}
	if !slices.Equal(servers, want) {
		t.Errorf("the shared nginx upstream is %v, want the proxies %v", servers, want)
	}
	if !strings.Contains(string(conf), "hash $mbp_affinity consistent;") {
		t.Error("the shared nginx upstream does not hash consistently on $mbp_affinity")
	}
}

func hasKey(m any, k string) bool {
	mm, ok := m.(map[string]any)
	_, has := mm[k]
	return ok && has
}

// checkRedisScript checks Redis's start script (the shell script of the
// compose command or the StatefulSet, with $ unescaped): it hands Redis
// requirepass, appendonly and noeviction, and, run with redis-server when
// installed (on a free loopback port, in a temp dir), refuses a short or
// URL-unsafe password, requires AUTH, and passes its healthcheck command.
func checkRedisScript(t *testing.T, script, health string) {
	t.Helper()
	for _, want := range []string{"exec redis-server - <<EOF\n", "\nrequirepass $REDIS_PASSWORD\n", "\nappendonly yes\n", "\nmaxmemory-policy noeviction\n", "\nEOF\n"} {
		if !strings.Contains(script, want) {
			t.Errorf("redis start script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "--requirepass") {
		t.Error("the Redis password is on a command line")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Log("redis-server not on PATH: the Redis start script was not run")
		return
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Log("redis-cli not on PATH: the Redis start script was not run")
		return
	}
	// run starts the script; done yields its exit, then is closed.
	run := func(password string) (cmd *exec.Cmd, port string, out *bytes.Buffer, done <-chan error) {
		dir := t.TempDir()
		_, port, _ = net.SplitHostPort(freeAddr(t))
		// The test's own port and dir, last in the configuration so that they win.
		i := strings.LastIndex(script, "\nEOF\n")
		s := script[:i] + "\nbind 127.0.0.1\nport " + port + "\ndir " + dir + script[i:]
		cmd = exec.Command("sh", "-c", s)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "REDIS_PASSWORD="+password)
		// Its own process group: a script that forks (no exec) leaves no
		// redis-server behind.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Error("redis-server did not exit after SIGKILL")
			}
		})
		return cmd, port, out, exited
	}
	for _, bad := range []string{"CHANGE_ME", "short0123", "0123456789abcdef0123456789abcdef@x"} {
		_, _, out, done := run(bad)
		select {
		case err := <-done:
			if err == nil || !strings.Contains(out.String(), "REDIS_PASSWORD") || !strings.Contains(out.String(), "openssl rand -hex 32") {
				t.Errorf("password %q: exit %v, output %q; want a refusal naming REDIS_PASSWORD and how to make one", bad, err, out)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("password %q: Redis started anyway", bad)
		}
	}
	password := "f00dfeed" + strings.Repeat("0123456789abcdef", 2)
	cmd, port, out, done := run(password)
	cli := func(auth bool, args ...string) (string, error) {
		c := exec.Command("redis-cli", append([]string{"-h", "127.0.0.1", "-p", port}, args...)...)
		c.Env = os.Environ()
		if auth {
			c.Env = append(c.Env, "REDISCLI_AUTH="+password)
		}
		b, err := c.CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, _ := cli(true, "ping")
		if got == "PONG" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis did not answer PING with the password: %q\n%s", got, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, _ := cli(false, "ping"); !strings.Contains(got, "NOAUTH") {
		t.Errorf("PING without the password: %q, want NOAUTH", got)
	}
	for k, want := range map[string]string{"appendonly": "yes", "maxmemory-policy": "noeviction"} {
		if got, _ := cli(true, "config", "get", k); got != k+"\n"+want {
			t.Errorf("CONFIG GET %s: %q, want %s", k, got, want)
		}
	}
	hc := exec.Command("sh", "-c", strings.Replace(health, "redis-cli ", "redis-cli -h 127.0.0.1 -p "+port+" ", 1))
	hc.Env = append(os.Environ(), "REDIS_PASSWORD="+password)
	if b, err := hc.CombinedOutput(); err != nil {
		t.Errorf("the healthcheck fails against a healthy Redis: %v %s", err, b)
	}
	hc = exec.Command("sh", "-c", strings.Replace(health, "redis-cli ", "redis-cli -h 127.0.0.1 -p "+port+" ", 1))
	hc.Env = append(os.Environ(), "REDIS_PASSWORD=wrong")
	if err := hc.Run(); err == nil {
		t.Error("the healthcheck passes with a wrong password")
	}
	// SIGTERM reaches redis-server itself (exec), which saves and exits 0.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Redis after SIGTERM: %v\n%s", err, out)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("Redis did not stop on SIGTERM (is it PID 1 of its script?)\n%s", out)
	}
}

// k8sByKind indexes manifests by kind/name.
func k8sByKind(docs []map[string]any) map[string]map[string]any {
	m := map[string]map[string]any{}
	for _, d := range docs {
		m[fmt.Sprint(d["kind"])+"/"+fmt.Sprint(dig(d, "metadata", "name"))] = d
	}
	return m
}

// envNamed finds the env entry name of a container.
func envNamed(c any, name string) any {
	env, _ := dig(c, "env").([]any)
	for _, e := range env {
		if dig(e, "name") == name {
			return e
		}
	}
	return nil
}

// envIndex is the position of env entry name, -1 when absent.
func envIndex(c any, name string) int {
	env, _ := dig(c, "env").([]any)
	return slices.IndexFunc(env, func(e any) bool { return dig(e, "name") == name })
}

// selects reports whether selector (matchLabels or a Service selector)
// matches labels.
func selects(selector, labels any) bool {
	sel, _ := selector.(map[string]any)
	l, _ := labels.(map[string]any)
	for k, v := range sel {
		if l[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// TestKubernetesSharedOverlay: deploy/kubernetes-shared is an overlay of
// deploy/kubernetes listing all its files; the Deployment patch runs two
// replicas that advertise http://$(POD_IP):<MBP_ADDR's port> from the
// downward API and reach the Redis Service with the password of the Redis
// Secret (the one Redis itself reads); the proxy's PVC is deleted and its
// data volume is an emptyDir; the PDB keeps one pod; the ingress hashes on
// the user; Redis is a StatefulSet on a PVC, not selected by the proxy's
// Service, and its start script works (checkRedisScript). With kubectl on
// PATH, kubectl kustomize renders the overlay and the result is checked too.
func TestKubernetesSharedOverlay(t *testing.T) {
	dir := filepath.Join(deployDir, "kubernetes-shared")
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var all []map[string]any
	for _, p := range files {
		for _, doc := range yamlDocs(t, p) {
			if doc["kind"] == nil || doc["apiVersion"] == nil {
				t.Errorf("%s: a document without kind or apiVersion", p)
			}
			all = append(all, doc)
		}
	}
	m := k8sByKind(all)
	kust := m["Kustomization/<nil>"]
	if kust == nil {
		t.Fatal("no kustomization.yaml")
	}
	var listed []string
	for _, r := range dig(kust, "resources").([]any) {
		listed = append(listed, r.(string))
	}
	for _, p := range dig(kust, "patches").([]any) {
		listed = append(listed, dig(p, "path").(string))
	}
	if !slices.Contains(listed, "../kubernetes") {
		t.Errorf("the overlay's resources %v do not include the base ../kubernetes", listed)
	}
	for _, p := range files {
		if b := filepath.Base(p); b != "kustomization.yaml" && !slices.Contains(listed, b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
	base := map[string]map[string]any{}
	baseFiles, _ := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	for _, p := range baseFiles {
		maps.Copy(base, k8sByKind(yamlDocs(t, p)))
	}
	dep := m["Deployment/mcp-browser-proxy"]
	if dep == nil || base["Deployment/mcp-browser-proxy"] == nil {
		t.Fatal("no Deployment patch of the base's mcp-browser-proxy")
	}
	if dig(dep, "spec", "replicas") != 2 {
		t.Errorf("replicas %v, want 2", dig(dep, "spec", "replicas"))
	}
	if dig(dep, "spec", "strategy", "type") != "RollingUpdate" || dig(dep, "spec", "strategy", "rollingUpdate", "maxUnavailable") != 0 {
		t.Errorf("strategy %v: want RollingUpdate with maxUnavailable 0 (one replica keeps serving)", dig(dep, "spec", "strategy"))
	}
	c := dig(dep, "spec", "template", "spec", "containers", 0)
	if dig(c, "name") != dig(base["Deployment/mcp-browser-proxy"], "spec", "template", "spec", "containers", 0, "name") {
		t.Fatalf("the patch's container %v is not the base's", dig(c, "name"))
	}
	_, port, _ := strings.Cut(dig(base["ConfigMap/mcp-browser-proxy"], "data", "MBP_ADDR").(string), ":")
	if dig(envNamed(c, "POD_IP"), "valueFrom", "fieldRef", "fieldPath") != "status.podIP" {
		t.Errorf("POD_IP is not the downward API's status.podIP: %v", envNamed(c, "POD_IP"))
	}
	if got, want := dig(envNamed(c, "MBP_ADVERTISE_URL"), "value"), "http://$(POD_IP):"+port; got != want || envIndex(c, "POD_IP") > envIndex(c, "MBP_ADVERTISE_URL") {
		t.Errorf("MBP_ADVERTISE_URL %v, want %s after POD_IP (the kubelet expands only earlier entries)", got, want)
	}
	redisSvc, redisSts, redisSecret := m["Service/mcp-browser-proxy-redis"], m["StatefulSet/mcp-browser-proxy-redis"], m["Secret/mcp-browser-proxy-redis"]
	if redisSvc == nil || redisSts == nil || redisSecret == nil {
		t.Fatal("no Redis Service, StatefulSet and Secret named mcp-browser-proxy-redis")
	}
	u, err := url.Parse(strings.ReplaceAll(fmt.Sprint(dig(envNamed(c, "MBP_REDIS_URL"), "value")), "$(REDIS_PASSWORD)", "pw"))
	if pw, _ := u.User.Password(); err != nil || u.Scheme != "redis" || u.Hostname() != "mcp-browser-proxy-redis" || u.Port() != fmt.Sprint(dig(redisSvc, "spec", "ports", 0, "port")) || pw != "pw" ||
		envIndex(c, "REDIS_PASSWORD") > envIndex(c, "MBP_REDIS_URL") {
		t.Errorf("MBP_REDIS_URL %v does not reach the Redis Service with $(REDIS_PASSWORD) defined before it (%v)", dig(envNamed(c, "MBP_REDIS_URL"), "value"), err)
	}
	rc := dig(redisSts, "spec", "template", "spec", "containers", 0)
	ref := dig(envNamed(c, "REDIS_PASSWORD"), "valueFrom", "secretKeyRef")
	if dig(ref, "name") != "mcp-browser-proxy-redis" || !hasKey(dig(redisSecret, "stringData"), fmt.Sprint(dig(ref, "key"))) ||
		fmt.Sprint(ref) != fmt.Sprint(dig(envNamed(rc, "REDIS_PASSWORD"), "valueFrom", "secretKeyRef")) {
		t.Errorf("the proxies' REDIS_PASSWORD %v is not Redis's %v from the Redis Secret", ref, dig(envNamed(rc, "REDIS_PASSWORD"), "valueFrom", "secretKeyRef"))
	}
	var data any
	for _, v := range dig(dep, "spec", "template", "spec", "volumes").([]any) {
		if dig(v, "name") == "data" {
			data = v
		}
	}
	if vm, _ := data.(map[string]any); vm == nil || !hasKey(vm, "persistentVolumeClaim") || vm["persistentVolumeClaim"] != nil || vm["emptyDir"] == nil {
		t.Errorf("the data volume %v: want persistentVolumeClaim: null and an emptyDir", data)
	}
	pvc := m["PersistentVolumeClaim/mcp-browser-proxy-data"]
	if pvc == nil || pvc["$patch"] != "delete" || base["PersistentVolumeClaim/mcp-browser-proxy-data"] == nil {
		t.Error("the base's PVC mcp-browser-proxy-data is not deleted by a $patch: delete")
	}
	pdb := m["PodDisruptionBudget/mcp-browser-proxy"]
	if dig(pdb, "spec", "minAvailable") != 1 || !hasKey(dig(pdb, "spec"), "maxUnavailable") || dig(pdb, "spec", "maxUnavailable") != nil {
		t.Errorf("PDB %v: want minAvailable 1 and the base's maxUnavailable removed", dig(pdb, "spec"))
	}
	hash, _ := dig(m["Ingress/mcp-browser-proxy"], "metadata", "annotations", "nginx.ingress.kubernetes.io/upstream-hash-by").(string)
	if !strings.HasPrefix(hash, "$http_x_user_id") {
		t.Errorf("ingress upstream-hash-by %q does not hash on $http_x_user_id", hash)
	}
	// Redis: persistent, not one of the proxy's pods.
	podLabels := dig(redisSts, "spec", "template", "metadata", "labels")
	if selects(dig(base["Service/mcp-browser-proxy"], "spec", "selector"), podLabels) || selects(dig(base["PodDisruptionBudget/mcp-browser-proxy"], "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("the proxy's Service or PDB selects the Redis pods (%v)", podLabels)
	}
	if !selects(dig(redisSts, "spec", "selector", "matchLabels"), podLabels) || !selects(dig(redisSvc, "spec", "selector"), podLabels) {
		t.Error("the Redis StatefulSet or Service does not select its own pods")
	}
	np := m["NetworkPolicy/mcp-browser-proxy-redis"]
	if !selects(dig(np, "spec", "podSelector", "matchLabels"), podLabels) ||
		!selects(dig(np, "spec", "ingress", 0, "from", 0, "podSelector", "matchLabels"), dig(base["Deployment/mcp-browser-proxy"], "spec", "template", "metadata", "labels")) {
		t.Error("the NetworkPolicy does not let the proxy pods, and only them, reach Redis")
	}
	if dig(redisSts, "spec", "volumeClaimTemplates", 0, "metadata", "name") != "data" || dig(rc, "volumeMounts", 0, "name") != "data" || dig(rc, "volumeMounts", 0, "mountPath") != "/data" {
		t.Errorf("Redis's /data is not on its PVC: %v %v", dig(redisSts, "spec", "volumeClaimTemplates"), dig(rc, "volumeMounts"))
	}
	if dig(redisSts, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true || dig(rc, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("Redis runs as root or with a writable root")
	}
	if pw, _ := dig(redisSecret, "stringData", dig(ref, "key")).(string); len(pw) >= 32 {
		t.Errorf("the Redis Secret placeholder %q is long enough for the start script to accept it", pw)
	}
	command, _ := dig(rc, "command").([]any)
	if len(command) != 3 || command[0] != "sh" || command[1] != "-c" {
		t.Fatalf("Redis command %v: want [sh -c script]", command)
	}
	probe, _ := dig(rc, "readinessProbe", "exec", "command").([]any)
	if len(probe) != 3 || probe[0] != "sh" || !strings.Contains(fmt.Sprint(probe[2]), "redis-cli ping") {
		t.Fatalf("Redis readinessProbe %v", probe)
	}
	checkRedisScript(t, command[2].(string), probe[2].(string))

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH: skipped kubectl kustomize of the overlay; the file checks above passed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	var rendered []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rendered = append(rendered, doc)
	}
	r := k8sByKind(rendered)
	for k := range r {
		if strings.HasPrefix(k, "PersistentVolumeClaim/") {
			t.Errorf("the rendered overlay has %s: the proxy needs no PVC in shared mode", k)
		}
	}
	rdep := r["Deployment/mcp-browser-proxy"]
	if dig(rdep, "spec", "replicas") != 2 || dig(rdep, "spec", "strategy", "rollingUpdate", "maxUnavailable") != 0 {
		t.Errorf("rendered Deployment: replicas %v, strategy %v", dig(rdep, "spec", "replicas"), dig(rdep, "spec", "strategy"))
	}
	rc0 := dig(rdep, "spec", "template", "spec", "containers", 0)
	if dig(rc0, "readinessProbe", "httpGet", "path") != "/ready" || dig(rc0, "envFrom") == nil || dig(envNamed(rc0, "MBP_ADVERTISE_URL"), "value") != "http://$(POD_IP):"+port {
		t.Errorf("rendered proxy container lost the base's /ready probe or envFrom, or the advertise URL: %v", rc0)
	}
	for _, v := range dig(rdep, "spec", "template", "spec", "volumes").([]any) {
		if dig(v, "persistentVolumeClaim") != nil {
			t.Errorf("rendered volume %v is a PVC", v)
		}
	}
	if spec := dig(r["PodDisruptionBudget/mcp-browser-proxy"], "spec"); dig(spec, "minAvailable") != 1 || hasKey(spec, "maxUnavailable") {
		t.Errorf("rendered PDB %v", spec)
	}
	ann := dig(r["Ingress/mcp-browser-proxy"], "metadata", "annotations")
	if dig(ann, "nginx.ingress.kubernetes.io/upstream-hash-by") != hash || dig(ann, "nginx.ingress.kubernetes.io/proxy-buffering") != "off" {
		t.Errorf("rendered ingress annotations %v: want the hash and the base's SSE settings", ann)
	}
	if selects(dig(r["Service/mcp-browser-proxy"], "spec", "selector"), dig(r["StatefulSet/mcp-browser-proxy-redis"], "spec", "template", "metadata", "labels")) {
		t.Error("rendered: the proxy's Service selects the Redis pods")
	}
}

// TestNginxSharedConfigIsTheSingleOneWithTwoUpstreams: apart from its
// header, the affinity map and the upstream block, the shared nginx config
// is the single-instance one, so that a fix to one cannot miss the other.
func TestNginxSharedConfigIsTheSingleOneWithTwoUpstreams(t *testing.T) {
	rest := func(name string) string {
		b, err := os.ReadFile(filepath.Join(deployDir, "nginx", name))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		i := strings.Index(s, "upstream mcp_browser_proxy {")
		if i < 0 {
			t.Fatalf("%s has no upstream mcp_browser_proxy", name)
		}
		return s[i+strings.Index(s[i:], "}\n"):]
	}
	if single, shared := rest("mcp-browser-proxy.conf"), rest("mcp-browser-proxy.shared.conf"); single != shared {
		t.Errorf("mcp-browser-proxy.shared.conf differs from mcp-browser-proxy.conf after the upstream block; keep them the same")
	}
}

// TestNginxSharedHashesOnTheUser runs the shared nginx config for real in
// front of two loopback backends that say which they are: requests with
// one X-User-Id reach one backend whatever their token; without X-User-Id,
// requests with one Authorization reach one backend; users and tokens
// spread over both; requests with neither are shared round robin.
func TestNginxSharedHashesOnTheUser(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not on PATH (apt-get install nginx): skipped the end-to-end run")
	}
	var addrs []string
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
		}))
		t.Cleanup(srv.Close)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	base := startNginx(t, nginx, "mcp-browser-proxy.shared.conf", addrs...)
	client := clientFrom(t, "127.0.0.1")
	backend := func(user, authz string) string {
		req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader("{}"))
		if user != "" {
			req.Header.Set("X-User-Id", user)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Backend")
	}
	// 32 keys all on one of two backends would be a broken hash, not chance
	// (nginx's consistent hash puts 160 points per server on the ring).
	const keys = 32
	for _, c := range []struct {
		what       string
		user, auth func(key, req int) string
	}{
		{"X-User-Id with a token per request", func(k, _ int) string { return fmt.Sprintf("user%d", k) }, func(k, r int) string { return fmt.Sprintf("Bearer tok%d.%d", k, r) }},
		{"Authorization only", func(int, int) string { return "" }, func(k, _ int) string { return fmt.Sprintf("Bearer tok%d", k) }},
	} {
		used := map[string]int{}
		for k := range keys {
			first := backend(c.user(k, 0), c.auth(k, 0))
			for r := 1; r < 4; r++ {
				if got := backend(c.user(k, r), c.auth(k, r)); got != first {
					t.Fatalf("%s: key %d went to %q, then to %q", c.what, k, first, got)
				}
			}
			used[first]++
		}
		if used["a"] == 0 || used["b"] == 0 || used["a"]+used["b"] != keys {
			t.Errorf("%s: %d keys spread as %v, want both backends used", c.what, keys, used)
		}
	}
	used := map[string]int{}
	for range 8 {
		used[backend("", "")]++
	}
	if used["a"] == 0 || used["b"] == 0 {
		t.Errorf("requests without a key spread as %v, want round robin over both", used)
	}
}
