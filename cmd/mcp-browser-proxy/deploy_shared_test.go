package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-browser-proxy/mcp-browser-proxy/internal/testredis"
	"github.com/mcp-browser-proxy/mcp-browser-proxy/proxy"
)

// TestComposeSharedFile: docker-compose.shared.yml runs Redis with a
// password and persistence, two proxies on it that share one JWT secret and
// advertise distinct URLs that name their own service on MBP_ADDR's port,
// and nginx with the shared config, whose upstream lists every proxy.
func TestComposeSharedFile(t *testing.T) {
	docs := yamlDocs(t, filepath.Join(deployDir, "docker-compose.shared.yml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	doc := docs[0]
	redis := dig(doc, "services", "redis")
	if redis == nil {
		t.Fatal("no redis service")
	}
	cmd := fmt.Sprint(dig(redis, "command"))
	if !strings.Contains(cmd, "--appendonly yes") || !strings.Contains(cmd, "--requirepass") {
		t.Errorf("redis runs %s: want append-only persistence and a password", cmd)
	}
	if dig(redis, "healthcheck", "test") == nil {
		t.Error("redis has no healthcheck for the proxies to wait on")
	}
	conf, err := os.ReadFile(filepath.Join(deployDir, "nginx", "mcp-browser-proxy.shared.conf"))
	if err != nil {
		t.Fatal(err)
	}
	subnet := dig(doc, "networks", "mbp", "ipam", "config", 0, "subnet")
	advertised := map[string]bool{}
	var secret any
	proxies := 0
	for name, svc := range dig(doc, "services").(map[string]any) {
		env, _ := dig(svc, "environment").(map[string]any)
		if env["MBP_REDIS_URL"] == nil {
			continue
		}
		proxies++
		if dig(svc, "build", "target") != "runtime" || dig(svc, "read_only") != true {
			t.Errorf("%s: build target %v, read_only %v", name, dig(svc, "build", "target"), dig(svc, "read_only"))
		}
		if dig(svc, "depends_on", "redis", "condition") != "service_healthy" {
			t.Errorf("%s does not wait for a healthy redis", name)
		}
		ru, err := url.Parse(strings.ReplaceAll(env["MBP_REDIS_URL"].(string), "${REDIS_PASSWORD:?set REDIS_PASSWORD}", "pw"))
		if err != nil || ru.Hostname() != "redis" || ru.Port() != "6379" || ru.User == nil {
			t.Errorf("%s: MBP_REDIS_URL %v is not the redis service with its password", name, env["MBP_REDIS_URL"])
		}
		adv, _ := env["MBP_ADVERTISE_URL"].(string)
		au, err := url.Parse(adv)
		if err != nil || au.Hostname() != name || !strings.HasSuffix(env["MBP_ADDR"].(string), ":"+au.Port()) {
			t.Errorf("%s: MBP_ADVERTISE_URL %q is not its own service on MBP_ADDR's port (%v)", name, adv, env["MBP_ADDR"])
		}
		if advertised[adv] {
			t.Errorf("%s advertises %s like another proxy", name, adv)
		}
		advertised[adv] = true
		if secret == nil {
			secret = env["MBP_JWT_SECRET"]
		}
		if s, _ := env["MBP_JWT_SECRET"].(string); s == "" || env["MBP_JWT_SECRET"] != secret || !strings.HasPrefix(s, "${") {
			t.Errorf("%s: MBP_JWT_SECRET %v: every proxy must take the same secret from the environment", name, env["MBP_JWT_SECRET"])
		}
		if env["MBP_TRUSTED_PROXIES"] != subnet {
			t.Errorf("%s: MBP_TRUSTED_PROXIES %v is not the network %v of nginx and the other proxies", name, env["MBP_TRUSTED_PROXIES"], subnet)
		}
		if !strings.Contains(string(conf), "server "+name+":"+au.Port()+";") {
			t.Errorf("the shared nginx upstream does not list %s:%s", name, au.Port())
		}
	}
	if proxies < 2 {
		t.Fatalf("%d proxies on redis, want at least two", proxies)
	}
	if !strings.Contains(fmt.Sprint(dig(doc, "services", "nginx", "volumes")), "./nginx/mcp-browser-proxy.shared.conf:/etc/nginx/conf.d/") {
		t.Error("nginx does not mount the shared config")
	}
}

// TestKubernetesShared: the shared overlay lists all its files, keeps the
// base, adds Redis, runs two replicas that advertise their pod IP on the
// container's port and reach Redis at its Service with the password from its
// Secret (each $(VAR) defined before it is used, as Kubernetes requires),
// deletes the base's PVC and mounts no claim, keeps one pod in a drain, and
// hashes on the user at the ingress.
func TestKubernetesShared(t *testing.T) {
	dir := filepath.Join(deployDir, "kubernetes", "shared")
	docs := map[string][]map[string]any{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, p := range files {
		docs[filepath.Base(p)] = yamlDocs(t, p)
	}
	kust := docs["kustomization.yaml"][0]
	listed := []string{}
	for _, r := range dig(kust, "resources").([]any) {
		listed = append(listed, r.(string))
	}
	for _, p := range dig(kust, "patches").([]any) {
		listed = append(listed, dig(p, "path").(string))
	}
	if !slices.Contains(listed, "../") {
		t.Error("the overlay does not build on the base ../")
	}
	for name := range docs {
		if name != "kustomization.yaml" && !slices.Contains(listed, name) {
			t.Errorf("kustomization.yaml does not list %s", name)
		}
	}
	kinds := map[string]map[string]any{}
	for _, name := range []string{"redis.yaml", "deployment.yaml", "pdb.yaml", "ingress.yaml", "pvc-delete.yaml"} {
		for _, d := range docs[name] {
			kinds[d["kind"].(string)] = d
		}
	}
	// The base's container port.
	base := yamlDocs(t, filepath.Join(deployDir, "kubernetes", "deployment.yaml"))[0]
	port, _ := dig(base, "spec", "template", "spec", "containers", 0, "ports", 0, "containerPort").(int)

	dep := kinds["Deployment"]
	if r, _ := dig(dep, "spec", "replicas").(int); r < 2 {
		t.Errorf("replicas %v, want at least 2", dig(dep, "spec", "replicas"))
	}
	if dig(dep, "spec", "strategy", "type") != "RollingUpdate" {
		t.Error("shared mode needs no Recreate: there is no single-writer file")
	}
	env := map[string]any{}
	var order []string
	for _, e := range dig(dep, "spec", "template", "spec", "containers", 0, "env").([]any) {
		name := dig(e, "name").(string)
		env[name] = e
		order = append(order, name)
	}
	before := func(a, b string) bool {
		return slices.Index(order, a) >= 0 && slices.Index(order, a) < slices.Index(order, b)
	}
	if dig(env["POD_IP"], "valueFrom", "fieldRef", "fieldPath") != "status.podIP" || !before("POD_IP", "MBP_ADVERTISE_URL") {
		t.Errorf("POD_IP is not the downward API's status.podIP defined before MBP_ADVERTISE_URL: %v", order)
	}
	if v := dig(env["MBP_ADVERTISE_URL"], "value"); v != fmt.Sprintf("http://$(POD_IP):%d", port) {
		t.Errorf("MBP_ADVERTISE_URL %v, want the pod IP on the container port %d", v, port)
	}
	redisSvc, redisSecret := "", ""
	for _, d := range docs["redis.yaml"] {
		switch d["kind"] {
		case "Service":
			redisSvc = dig(d, "metadata", "name").(string)
			if dig(d, "spec", "ports", 0, "port") != 6379 {
				t.Errorf("redis Service port %v", dig(d, "spec", "ports", 0, "port"))
			}
		case "Secret":
			redisSecret = dig(d, "metadata", "name").(string)
		case "StatefulSet":
			if a := fmt.Sprint(dig(d, "spec", "template", "spec", "containers", 0, "args")); !strings.Contains(a, "--appendonly yes") || !strings.Contains(a, "--requirepass $(REDIS_PASSWORD)") {
				t.Errorf("redis args %s: want persistence and the Secret's password", a)
			}
			if dig(d, "spec", "volumeClaimTemplates", 0) == nil {
				t.Error("redis keeps its data on no volume")
			}
		}
	}
	if dig(env["REDIS_PASSWORD"], "valueFrom", "secretKeyRef", "name") != redisSecret || !before("REDIS_PASSWORD", "MBP_REDIS_URL") {
		t.Errorf("REDIS_PASSWORD is not redis's Secret %q defined before MBP_REDIS_URL: %v", redisSecret, order)
	}
	if v := dig(env["MBP_REDIS_URL"], "value"); v != "redis://:$(REDIS_PASSWORD)@"+redisSvc+":6379/0" {
		t.Errorf("MBP_REDIS_URL %v is not the redis Service %q", v, redisSvc)
	}
	for _, v := range dig(dep, "spec", "template", "spec", "volumes").([]any) {
		if dig(v, "persistentVolumeClaim") != nil || dig(v, "emptyDir") == nil {
			t.Errorf("volume %v: in shared mode /data is an emptyDir, not the base's claim", v)
		}
	}
	if dig(kinds["PersistentVolumeClaim"], "$patch") != "delete" {
		t.Error("the base's PVC is not deleted")
	}
	if dig(kinds["PodDisruptionBudget"], "spec", "minAvailable") != 1 {
		t.Errorf("PDB minAvailable %v, want 1", dig(kinds["PodDisruptionBudget"], "spec", "minAvailable"))
	}
	if h, _ := dig(kinds["Ingress"], "metadata", "annotations", "nginx.ingress.kubernetes.io/upstream-hash-by").(string); !strings.Contains(h, "$http_x_user_id") {
		t.Errorf("the ingress hashes on %q, not on the user", h)
	}
}

// TestNginxSharedKeepsAUserOnOneProxy: deploy/nginx's shared config in front
// of two real proxies on one Redis sends every request of a user to the same
// proxy, the user's home, so none of them is forwarded between the proxies;
// without the hashing, about half would be.
func TestNginxSharedKeepsAUserOnOneProxy(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not on PATH (apt-get install nginx): skipped the end-to-end run")
	}
	rs := testredis.Start(t)
	args := []string{"--redis-url", rs.URL, "--jwt-secret", procSecret, "--trusted-proxies", "127.0.0.1"}
	a, b := startServe(t, t.TempDir(), args...), startServe(t, t.TempDir(), args...)
	base, _ := startNginx(t, nginx, "mcp-browser-proxy.shared.conf", "127.0.0.2",
		strings.TrimPrefix(a.base, "http://"), strings.TrimPrefix(b.base, "http://"))
	client := clientFrom(t, "127.0.0.2")

	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		out, _, err := run(t, "token", "issue", "--user", user, "--ttl", "1h", "--jwt-secret", procSecret)
		if err != nil {
			t.Fatal(err)
		}
		tok := strings.TrimSpace(out)
		reg := proxy.RegisterRequest{UserID: user, BrowserURL: "http://" + freeAddr(t)}
		if st := nginxCall(t, client, base, http.MethodPost, "/api/register", user, tok, reg); st != http.StatusCreated {
			t.Fatalf("register %s through nginx: %d", user, st)
		}
		for range 6 {
			if st := nginxCall(t, client, base, http.MethodGet, "/api/users/"+user+"/status", user, tok, nil); st != http.StatusOK {
				t.Fatalf("status of %s through nginx: %d", user, st)
			}
		}
	}
	// Each user's requests reached one proxy only: a forwarded request
	// would also be logged by the proxy that forwarded it.
	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		path := `"path":"/api/users/` + user + `/status"`
		if inA, inB := strings.Contains(a.logs.String(), path), strings.Contains(b.logs.String(), path); inA == inB {
			t.Errorf("%s's status requests logged by A: %v, by B: %v; want exactly one proxy", user, inA, inB)
		}
	}
	for _, s := range []*served{a, b} {
		if strings.Contains(s.logs.String(), `"forwarded_to"`) {
			t.Errorf("a request was forwarded between the proxies: nginx did not keep a user on one proxy:\n%s", s.logs.String())
		}
	}
}

// nginxCall sends a JSON API request with the user's X-User-Id (what nginx
// hashes on) and bearer token, and returns the status.
func nginxCall(t *testing.T, c *http.Client, base, method, path, user, tok string, body any) int {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-User-Id", user)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
