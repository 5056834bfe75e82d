package scaffold

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/internal/atomicfile"
	"github.com/agentgw/agentgw/subjects"
)

// Options say what to write. Zero values take the documented defaults;
// Dir, Tenants and Hosts are required.
type Options struct {
	// Dir is the directory written into; created if missing. A relative
	// Dir is made absolute with the working directory, and the absolute
	// path, which nats-server.conf names unless NATSDir is set, is
	// checked as the paths below are (no quotes, line breaks, …).
	Dir string
	// Tenants are the tenant names ([a-z0-9_-]{1,64}), one NATS account
	// each, and a pre-created consumer per tenant and target
	// (client.CapabilityConsumerName; tenants whose consumers would share
	// a name are refused with an error wrapping client.ErrConsumerName).
	Tenants []string
	// Hosts are the NATS nodes' names or addresses, as clients dial them:
	// one for a single node, three for a cluster.
	Hosts []string
	// Instances is the number of gateway instances sharing the ingress
	// partitions (scale_out). Zero or 1: one gateway, no scale_out.
	Instances int
	// Audience is the gateway's audience. Default "agentgw".
	Audience string
	// CACert and CAKey name an existing client CA (PEM certificate and
	// private key) to sign every client and server certificate with.
	// Both or neither; neither makes a new CA (ca/ca.pem, ca/ca-key.pem).
	CACert, CAKey string
	// ServerSANs are extra DNS names or IP addresses put in every node's
	// server and route certificate (a load balancer's name, 127.0.0.1).
	ServerSANs []string
	// ClientPort and RoutePort are the NATS client and cluster ports.
	// Defaults 4222 and 6222.
	ClientPort, RoutePort int
	// NATSDir is where a node's files (nats/<host>/ here) live on its
	// host: the paths nats-server.conf names. Empty: where they are
	// written, as an absolute path, so the servers run in place.
	NATSDir string
	// StoreDir is the JetStream store directory. Empty: <NATSDir>/jetstream.
	StoreDir string
	// DataDir is the gateway's data_dir. Empty: "data", next to
	// gateway.yaml.
	DataDir string
	// Validity is the lifetime of leaf certificates. Default 365 days;
	// a CA made here lives ten times as long.
	Validity time.Duration
	// TenantMaxConnections and TenantMaxSubscriptions are every tenant
	// account's limits in accounts.conf (TENANT_LIMITS): its connections
	// together, and the subscriptions of each of its connections.
	// Defaults DefaultTenantMaxConnections and
	// DefaultTenantMaxSubscriptions; at most MaxTenantLimit.
	TenantMaxConnections, TenantMaxSubscriptions int
	// CredentialTTL is the lifetime of the example credentials. Default
	// 12h (the gateway accepts at most limits.max_credential_lifetime).
	CredentialTTL time.Duration
	// Force overwrites existing files. Without it Write refuses to
	// write anything when one of its files exists.
	Force bool
	// Now is the issue time; zero means time.Now().
	Now time.Time
}

// Sentinel errors.
var (
	// ErrOptions is a bad option; Write wrote nothing.
	ErrOptions = errors.New("scaffold: options")
	// ErrExists means files are in the way and Options.Force is not set;
	// Write wrote nothing.
	ErrExists = errors.New("scaffold: file exists")
	// ErrOpenDir means a directory Write would write into exists and
	// another user could replace what is written there: it is writable
	// by its group or by others, or owned by another user. Write wrote
	// nothing.
	ErrOpenDir = errors.New("scaffold: directory open to other users")
)

// Tenant account limits (Options): a tenant of a couple of hundred
// identities (agents, approvers, capability consumers, MCP bridges and
// endpoints, each with one connection or more) fits in 256 connections;
// an agent holds a few subscriptions (its inbox, its reply subject, one
// per answer it waits for), and 512 leaves room for a process that
// waits for many answers at once.
const (
	DefaultTenantMaxConnections   = 256
	DefaultTenantMaxSubscriptions = 512
	// MaxTenantLimit bounds either limit: more would be no limit on a
	// server that admits 10,000 connections in all.
	MaxTenantLimit = 100000
)

// reserved account names: a tenant cannot be one of them.
var reserved = []string{"AGENTGW", "OPS", "SYS"}

func (o *Options) withDefaults() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.Dir == "" {
		add("a directory is required")
	}
	if len(o.Tenants) == 0 {
		add("at least one tenant is required")
	}
	seen := map[string]bool{}
	for _, t := range o.Tenants {
		switch {
		case !subjects.ValidToken(t):
			add("tenant %q: want 1-64 of [a-z0-9_-]", t)
		case t == subjects.UnroutableTenant:
			add("tenant %q: reserved for denied messages that name no tenant", t)
		case slices.Contains(reserved, strings.ToUpper(t)):
			add("tenant %q: its account name %s is taken by agentgw", t, strings.ToUpper(t))
		case seen[strings.ToUpper(t)]:
			add("tenant %q given twice", t)
		}
		seen[strings.ToUpper(t)] = true
	}
	// Every (tenant, target) pair gets a pre-created consumer of its own:
	// a name shared by two would be one consumer, exported to both.
	consumers := client.ConsumerNames{}
	for _, t := range o.Tenants {
		for _, target := range targets {
			if subjects.ValidToken(t) {
				if err := consumers.Add(client.CapabilityConsumerName(t, target), "tenant "+t+" target "+target); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	switch len(o.Hosts) {
	case 1, 3:
	default:
		add("%d hosts: give one (a single node) or three (a cluster)", len(o.Hosts))
	}
	hosts := map[string]bool{}
	for _, h := range o.Hosts {
		switch {
		case !validHost(h):
			add("host %q: want a DNS name or an IP address", h)
		case hosts[h]:
			add("host %q given twice", h)
		}
		hosts[h] = true
	}
	for _, s := range o.ServerSANs {
		if !validHost(s) {
			add("server SAN %q: want a DNS name or an IP address", s)
		}
	}
	if o.Instances == 0 {
		o.Instances = 1
	}
	if o.Instances < 1 || o.Instances > maxInstances {
		add("instances %d: want 1 to %d", o.Instances, maxInstances)
	}
	if (o.CACert == "") != (o.CAKey == "") {
		add("an existing CA needs both its certificate and its key")
	}
	if o.Audience == "" {
		o.Audience = "agentgw"
	}
	if o.ClientPort == 0 {
		o.ClientPort = 4222
	}
	if o.RoutePort == 0 {
		o.RoutePort = 6222
	}
	for _, p := range []int{o.ClientPort, o.RoutePort} {
		if p < 1 || p > 65535 {
			add("port %d: want 1-65535", p)
		}
	}
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if o.Validity < time.Hour {
		add("certificate validity %s: want at least an hour", o.Validity)
	}
	if o.TenantMaxConnections == 0 {
		o.TenantMaxConnections = DefaultTenantMaxConnections
	}
	if o.TenantMaxSubscriptions == 0 {
		o.TenantMaxSubscriptions = DefaultTenantMaxSubscriptions
	}
	for _, l := range []struct {
		name string
		n    int
	}{{"connections", o.TenantMaxConnections}, {"subscriptions", o.TenantMaxSubscriptions}} {
		if l.n < 1 || l.n > MaxTenantLimit {
			add("tenant max %s %d: want 1 to %d", l.name, l.n, MaxTenantLimit)
		}
	}
	if o.CredentialTTL == 0 {
		o.CredentialTTL = 12 * time.Hour
	}
	if o.CredentialTTL < time.Minute || o.CredentialTTL > 24*time.Hour {
		add("credential TTL %s: want 1m to 24h", o.CredentialTTL)
	}
	for _, p := range []string{o.NATSDir, o.StoreDir} {
		if p != "" && !filepath.IsAbs(p) {
			add("%q: nats-server paths must be absolute", p)
		}
	}
	// These are written into the configurations as they are: a quote or
	// a line break would end their string, or their line, and add
	// configuration of its own.
	if !validAudience(o.Audience) {
		add("audience %q: want 1-128 characters of [A-Za-z0-9._:/-]", o.Audience)
	}
	for _, p := range []string{o.Dir, o.NATSDir, o.StoreDir, o.DataDir} {
		if !safePath(p) {
			add("%q: %s", p, unsafePathRule)
		}
	}
	// A relative Dir is made absolute with the working directory, and
	// the absolute path is what nats-server.conf names: the working
	// directory's name is checked as Dir's is.
	if o.Dir != "" && safePath(o.Dir) {
		if abs, err := filepath.Abs(o.Dir); err != nil {
			add("directory %q: %v", o.Dir, err)
		} else if !safePath(filepath.ToSlash(abs)) {
			add("directory %q, made absolute with the working directory, is %q: %s (give an absolute directory, or run from another one)", o.Dir, abs, unsafePathRule)
		} else {
			o.Dir = abs
		}
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrOptions, err)
	}
	return nil
}

// unsafePathRule is what safePath refuses, as errors say it.
const unsafePathRule = "a path here may not hold quotes, backslashes, line breaks, tabs or any of # { } [ ] $"

// safePath reports whether p may be written into the configurations as
// it is (nats-server.conf names paths in strings and in a comment line,
// gateway.yaml its data_dir): a quote or a line break would end its
// string, or its line, and add configuration of its own.
func safePath(p string) bool {
	return !strings.ContainsAny(p, "\"'\\\n\r\t#{}[]$") && !strings.ContainsFunc(p, unicode.IsControl)
}

// validAudience: the envelope's audience alphabet (docs/wire.md).
func validAudience(a string) bool {
	if a == "" || len(a) > 128 {
		return false
	}
	for _, c := range a {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', strings.ContainsRune("._:/-", c):
		default:
			return false
		}
	}
	return true
}

// maxInstances bounds --instances: each instance must own at least one
// of the partitions (partitionsFor).
const maxInstances = 64

// partitionsFor is consumer.partitions for n instances: 12 (the
// deployment grows to 12 instances without an offline change) or n when
// more.
func partitionsFor(n int) int { return max(12, n) }

// validHost accepts an IP address or a DNS name (letters, digits,
// hyphens, dots; no leading or trailing dot or hyphen).
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if strings.ContainsAny(h, ":") {
		return isIP(h)
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// File is one file Write writes.
type File struct {
	Path string      // relative to Options.Dir, slash separated
	Mode os.FileMode // 0600 for every secret
	data []byte
}

// Secret reports whether the file holds a secret (mode 0600).
func (f File) Secret() bool { return f.Mode == secretMode }

const (
	secretMode os.FileMode = 0o600
	publicMode os.FileMode = 0o644
	dirMode    os.FileMode = 0o700
)

// Deployment is what Write wrote.
type Deployment struct {
	Dir   string
	Files []File
	// Cluster is true for three hosts.
	Cluster bool
	// Replicas is streams.replicas of gateway.yaml.
	Replicas int
	// GatewayKey and GatewayXKey are the gateway's public signing and
	// curve keys: consumers trust the first, agents seal to the second.
	GatewayKey, GatewayXKey string
	// NewCA is true when Write made the client CA (ca/ca-key.pem).
	NewCA bool
}

// Write renders the deployment of o into o.Dir. Unless o.Force, it
// refuses (ErrExists, listing them) when any of its files exists, before
// writing any. Secrets are written 0600, and the directories it makes
// 0700. A directory it writes into that exists already (o.Dir, or one
// below it) must be the running user's and writable by nobody else:
// otherwise Write refuses (ErrOpenDir, naming the directory, its mode
// and owner) before writing any file, whether or not o.Force is set.
// Read and search bits of the group and others are left as they are.
func Write(o Options) (*Deployment, error) {
	if err := o.withDefaults(); err != nil {
		return nil, err
	}
	dir := o.Dir // absolute (withDefaults)
	d, err := render(o)
	if err != nil {
		return nil, err
	}
	if err := checkDirs(dir, d.Files); err != nil {
		return nil, err
	}
	if !o.Force {
		var in []string
		for _, f := range d.Files {
			if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f.Path))); err == nil {
				in = append(in, f.Path)
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("scaffold: %w", err)
			}
		}
		if len(in) > 0 {
			shown := in[:min(len(in), 5)]
			more := ""
			if len(in) > len(shown) {
				more = fmt.Sprintf(" and %d more", len(in)-len(shown))
			}
			return nil, fmt.Errorf("%w in %s: %s%s", ErrExists, dir, strings.Join(shown, ", "), more)
		}
	}
	for _, f := range d.Files {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f.data, f.Mode); err != nil {
			return nil, fmt.Errorf("scaffold: %w", err)
		}
	}
	return d, nil
}

// checkDirs refuses (ErrOpenDir) when dir, or a directory between dir
// and one of files, exists and is writable by its group or others, or
// owned by another user: whoever can write to a directory can rename
// over or delete what is written there (a gateway.yaml, a revocations
// file, a seed under keys/), and a directory of another user's is that
// user's to change. Missing directories are skipped: writeFile makes
// them 0700.
func checkDirs(dir string, files []File) error {
	seen := map[string]bool{dir: true}
	paths := []string{dir}
	for _, f := range files {
		rel := filepath.Dir(filepath.FromSlash(f.Path))
		var sub string
		for part := range strings.SplitSeq(rel, string(filepath.Separator)) {
			if part == "." {
				continue
			}
			sub = filepath.Join(sub, part)
			if p := filepath.Join(dir, sub); !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
	}
	// One that is not a directory is skipped: writeFile fails on it,
	// naming it.
	open, err := atomicfile.OpenDirs(paths...)
	if err != nil {
		return fmt.Errorf("scaffold: %w", err)
	}
	if len(open) > 0 {
		return fmt.Errorf("%w: %s: another user could replace the keys and configuration written there", ErrOpenDir, strings.Join(open, ", "))
	}
	return nil
}

// writeFile writes data with mode atomically (atomicfile.Write), making
// its directory first: an existing file (with --force) is replaced, never
// reused with its old mode, and a reader never sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return err
	}
	return atomicfile.Write(path, data, mode)
}
