package scaffold_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/scaffold"
)

// The paths the container image and the systemd unit agree on, and that
// deploy/README.md tells deploy init to write for.
const (
	installedBin  = "/usr/local/bin/agentgw"
	installedConf = "/etc/agentgw/gateway.yaml"
	stateDir      = "/var/lib/agentgw"
)

func readRepo(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", p))
	must(t, err)
	return string(data)
}

// directive returns the values of "key<sep>value" lines (Dockerfile
// instructions, unit settings, make variables).
func directive(src, key, sep string) []string {
	var out []string
	for _, line := range strings.Split(src, "\n") {
		if v, ok := strings.CutPrefix(line, key+sep); ok {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// TestPackaging: deploy/Dockerfile and deploy/agentgw.service run the
// binary `make static` builds, from the same paths, as a non-root user,
// with the ledger in the one writable directory; the Go of the image is
// the module's.
func TestPackaging(t *testing.T) {
	mk := readRepo(t, "Makefile")
	docker := readRepo(t, "deploy/Dockerfile")
	unit := readRepo(t, "deploy/agentgw.service")
	gomod := readRepo(t, "go.mod")

	// make static: CGO off, output STATIC_BIN.
	staticBin := directive(mk, "STATIC_BIN", " ?= ")
	if len(staticBin) != 1 {
		t.Fatalf("Makefile: STATIC_BIN defaults %v; want one", staticBin)
	}
	target := regexp.MustCompile(`(?m)^static:\n\tCGO_ENABLED=0 \$\(GO\) build [^\n]*-o \$\(STATIC_BIN\) \./cmd/agentgw\n`)
	if !target.MatchString(mk) {
		t.Fatal("Makefile: target static does not build ./cmd/agentgw with CGO_ENABLED=0 into $(STATIC_BIN)")
	}
	if !strings.Contains(readRepo(t, ".ci/run"), "\nmake static\n") {
		t.Error(".ci/run does not build the static binary")
	}

	// Dockerfile: builds with make static, copies that file, runs it as
	// non-root on a static base.
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	froms := directive(docker, "FROM", " ")
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:"+goVersion[1]+"-") || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("Dockerfile stages %q; want golang:%s-… AS build, then the runtime", froms, goVersion[1])
	}
	if len(froms) == 2 && froms[1] != "scratch" && !regexp.MustCompile(`^gcr\.io/distroless/static[-a-z0-9]*:nonroot$`).MatchString(froms[1]) {
		t.Errorf("Dockerfile runtime stage %q; want distroless static (nonroot) or scratch", froms[1])
	}
	var built string
	for _, run := range directive(docker, "RUN", " ") {
		if v, ok := strings.CutPrefix(run, "make static STATIC_BIN="); ok {
			built = v
		}
	}
	if built == "" {
		t.Fatal("Dockerfile: no RUN make static STATIC_BIN=…")
	}
	if got := directive(docker, "COPY", " "); !strings.Contains(strings.Join(got, "\n"), "--from=build "+built+" "+installedBin) {
		t.Errorf("Dockerfile COPY %q; want --from=build %s %s", got, built, installedBin)
	}
	if u := directive(docker, "USER", " "); len(u) != 1 || u[0] == "root" || strings.HasPrefix(u[0], "0") {
		t.Errorf("Dockerfile USER %q; want one non-root user", u)
	}
	if got := directive(docker, "ENTRYPOINT", " "); len(got) != 1 || got[0] != `["`+installedBin+`"]` {
		t.Errorf("Dockerfile ENTRYPOINT %q; want %s", got, installedBin)
	}
	if got := directive(docker, "CMD", " "); len(got) != 1 || got[0] != `["serve", "--config", "`+installedConf+`"]` {
		t.Errorf("Dockerfile CMD %q; want serve --config %s", got, installedConf)
	}
	if got := directive(docker, "VOLUME", " "); len(got) != 1 || got[0] != `["`+stateDir+`"]` {
		t.Errorf("Dockerfile VOLUME %q; want %s", got, stateDir)
	}
	ignore := readRepo(t, "deploy/Dockerfile.dockerignore")
	for _, p := range []string{"bin", "**/node_modules", ".git", "prod"} {
		if len(directive(ignore, p, "")) == 0 {
			t.Errorf("deploy/Dockerfile.dockerignore does not keep %s out of the build context", p)
		}
	}

	// The unit: same binary and config, its state directory is the
	// ledger's, a dedicated user, the hardening settings.
	if !strings.Contains(unit, "install -m 0755 "+staticBin[0]+" "+installedBin) {
		t.Errorf("agentgw.service does not install %s as %s", staticBin[0], installedBin)
	}
	want := map[string]string{
		"ExecStart":               installedBin + " serve --config " + installedConf,
		"StateDirectory":          strings.TrimPrefix(stateDir, "/var/lib/"),
		"User":                    "agentgw",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"MemoryDenyWriteExecute":  "yes",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
	}
	for k, v := range want {
		if got := directive(unit, k, "="); len(got) != 1 || got[0] != v {
			t.Errorf("agentgw.service %s=%q; want %q", k, got, v)
		}
	}
	if got := directive(unit, "DynamicUser", "="); len(got) != 0 {
		t.Errorf("agentgw.service DynamicUser=%q: the keys are readable by the agentgw group only", got)
	}

	// What deploy init writes for these paths: gateway/ copied to
	// /etc/agentgw loads there, its ledger in the state directory.
	dir := t.TempDir()
	o := oneNode(dir)
	o.DataDir = stateDir
	_, err := scaffold.Write(o)
	must(t, err)
	etc := filepath.Join(t.TempDir(), "etc", "agentgw")
	must(t, os.CopyFS(etc, os.DirFS(filepath.Join(dir, scaffold.GatewayDir))))
	cfg, err := gateway.LoadConfig(filepath.Join(etc, filepath.Base(installedConf)))
	must(t, err)
	if cfg.DataDir != stateDir {
		t.Errorf("data_dir %q; want %s", cfg.DataDir, stateDir)
	}
	for _, p := range append([]string{cfg.Catalog, cfg.Keys.Signing, cfg.Keys.Curve, cfg.NATS.TLS.CA, cfg.NATS.TLS.Cert, cfg.NATS.TLS.Key, cfg.Revocations.File}, cfg.Policies...) {
		if !strings.HasPrefix(p, etc+string(filepath.Separator)) {
			t.Errorf("gateway.yaml names %s, outside the copied directory", p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("gateway.yaml names %s: %v", p, err)
		}
	}
}
