package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agentgw/agentgw/gateway/budget"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/tracing"
	"github.com/agentgw/agentgw/store/lease"
	"github.com/agentgw/agentgw/subjects"
)

// Config is the gateway configuration file. Decode it with LoadConfig;
// unknown fields are errors. Relative paths are relative to the file.
type Config struct {
	// Audience is the name agents put in `audience` and credentials in
	// `aud`. Required.
	Audience string `yaml:"audience"`
	// DataDir holds the ledger. Required.
	DataDir string `yaml:"data_dir"`
	// NATS is how to reach the server.
	NATS NATSConfig `yaml:"nats"`
	// Keys are the gateway's own seed files.
	Keys KeysConfig `yaml:"keys"`
	// Tenants maps a tenant name to its trusted credential issuers.
	Tenants map[string]TenantConfig `yaml:"tenants"`
	// Revocations lists revoked credential ids and agent keys. The file
	// is re-read on reload, so revocation needs no restart.
	Revocations RevocationConfig `yaml:"revocations"`
	// Catalog is the capability catalog file. Required.
	Catalog string `yaml:"catalog"`
	// Policies are Cedar policy files; the gateway does not start without
	// one, and a file that holds no policy is refused. Cedar denies what
	// no permit allows.
	Policies []string `yaml:"policies"`
	// Limits bound messages and credentials.
	Limits Limits `yaml:"limits"`
	// Streams configure the JetStream streams the gateway creates.
	Streams StreamsConfig `yaml:"streams"`
	// Consumer configures the ingress pull consumer.
	Consumer ConsumerConfig `yaml:"consumer"`
	// Budgets are the default rate limits.
	Budgets budget.Limits `yaml:"budgets"`
	// Metrics configures the Prometheus listener.
	Metrics MetricsConfig `yaml:"metrics"`
	// Tracing selects the OpenTelemetry exporter (none, stdout, file,
	// otlp); tracing.file is relative to the config file.
	Tracing tracing.Config `yaml:"tracing"`
	// Exchange, when set, serves the OAuth/OIDC token exchange
	// (package exchange) from the gateway process.
	Exchange *exchange.Config `yaml:"exchange"`
	// NotifySenders sends each authenticated sender a decision notice
	// (package notice) on its reply subject: delivered, held or denied
	// with the reason code. Default true; false saves one reply-stream
	// message per decision (docs/performance.md).
	NotifySenders bool `yaml:"notify_senders"`
	// ReloadInterval is how often policy, catalog and revocation files
	// are checked for changes. Zero disables polling (SIGHUP still works).
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// ScaleOut, when set, makes this process one of several gateway
	// instances sharing the ingress partitions (docs/scale-out.md):
	// partitions are taken by lease, each with its own ledger rebuilt
	// from a JetStream journal. Unset: one instance owns every partition
	// and keeps one ledger on its disk.
	ScaleOut *ScaleOutConfig `yaml:"scale_out"`

	dir string
}

// MetricsConfig configures /metrics, /healthz and /readyz.
type MetricsConfig struct {
	// Listen is the address, e.g. "127.0.0.1:9090". Empty: no listener.
	Listen string `yaml:"listen"`
}

// NATSConfig says how to connect.
type NATSConfig struct {
	// URL of the server(s), comma separated. Empty with an embedded
	// server means in-process.
	URL string `yaml:"url"`
	// Creds is a .creds file for the gateway's NATS user (decentralized
	// auth: a NATS user JWT and seed).
	Creds string `yaml:"creds"`
	// NKey is an nkey seed file for a static nkey user (deploy/'s tenant
	// accounts use the agent's own key).
	NKey string `yaml:"nkey"`
	// InboxPrefix replaces _INBOX for replies, so permissions can confine
	// a user to its own inboxes.
	InboxPrefix string `yaml:"inbox_prefix"`
	// TLS configures the client side of TLS.
	TLS TLSConfig `yaml:"tls"`
	// Name is the connection name shown by the server.
	Name string `yaml:"name"`
}

// TLSConfig holds client TLS files.
type TLSConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Required refuses to talk to a server that does not offer TLS.
	Required bool `yaml:"required"`
}

// KeysConfig names the gateway's seed files (nkeys seeds, mode 0600).
type KeysConfig struct {
	// Signing signs decision tokens.
	Signing string `yaml:"signing"`
	// Curve opens sealed payloads and re-seals them to consumers.
	Curve string `yaml:"curve"`
	// AcceptedCurves are curve seed files the gateway opens with besides
	// Curve, and seals nothing new with but the reply to a request sealed
	// to one: in a rotation, the key it replaced (payloads of agents not
	// yet moved to the new key, held requests, denied records sealed to
	// it), or, scaled out, the key the instances are about to take. At
	// most MaxAcceptedCurves.
	AcceptedCurves []string `yaml:"accepted_curves"`
}

// MaxAcceptedCurves bounds keys.accepted_curves: each is a key a sealed
// message may name, and a proof of an exchange request is tried with
// every one.
const MaxAcceptedCurves = 4

// TenantConfig lists a tenant's issuer public keys (A...).
type TenantConfig struct {
	Issuers []string `yaml:"issuers"`
}

// RevocationConfig lists revocations inline and/or in a file of the same
// shape.
type RevocationConfig struct {
	JTIs []string `yaml:"jtis"`
	Keys []string `yaml:"keys"`
	// Principals are IdP identities ("<IdP issuer>#<IdP subject>", a
	// credential's nats.principal): every credential issued for one, or
	// naming it among its actors, is revoked, and the token exchange
	// issues none for it.
	Principals []string `yaml:"principals"`
	File       string   `yaml:"file"`
}

// Limits bound what the gateway accepts. Durations are Go durations.
type Limits struct {
	// MaxBodyBytes is the largest envelope body, in (0, 1 MiB]. Default
	// 64 KiB. Run also refuses one whose largest output,
	// maxOutputBytes (6·MaxBodyBytes + 64 KiB), is over the server's
	// max_payload.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxTTL is the longest expires_at - issued_at, in (0, 24h]. Default 5m.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Skew is the clock skew tolerated, in [0, 5m]. Default 30s. With
	// MaxTTL it is the freshness rule (Freshness), from which every
	// window that must outlast a fresh message is derived.
	Skew time.Duration `yaml:"skew"`
	// MaxCredentialLifetime is the longest credential exp - iat. Default 24h.
	MaxCredentialLifetime time.Duration `yaml:"max_credential_lifetime"`
	// DecisionTTL is the lifetime of decision tokens. Default 5m.
	DecisionTTL time.Duration `yaml:"decision_ttl"`
	// ApprovalTTL is how long a held request waits. Default 15m.
	ApprovalTTL time.Duration `yaml:"approval_ttl"`
}

// maxMaxTTL bounds limits.max_ttl: the ledger keeps every entry, and the
// journal every record, for max_ttl + 2·skew, and a day is far beyond
// any useful message lifetime.
const maxMaxTTL = 24 * time.Hour

// Freshness is the freshness rule the limits set. It is the one source of
// the time windows tied to a message's lifetime: the freshness gate
// checks it, the ledger keeps entries for its Grace (ledgerOptions) and
// the journal keeps records for its Span (journalWindow), so none of
// them can end while a copy of the message is still fresh.
func (l Limits) Freshness() envelope.Freshness {
	return envelope.Freshness{MaxTTL: l.MaxTTL, Skew: l.Skew}
}

// minIngressMaxAge is the least streams.ingress_max_age: the time an
// operator has, from the first message held back (an output stream
// full, the gateway stopped or unable to decide), to make room or start
// it again before the ingress stream deletes what waits. It is also
// above the default duplicate window, which nats-server refuses to
// exceed the stream's max age.
const minIngressMaxAge = time.Hour

// StreamsConfig configures the streams created at start.
type StreamsConfig struct {
	// Replicas for every stream: 1 for a single server, 3 in production.
	Replicas int `yaml:"replicas"`
	// MaxAge is how long output, denied and audit messages are kept.
	// Default 7 days (168h).
	MaxAge time.Duration `yaml:"max_age"`
	// IngressMaxAge is how long ingress messages are kept. Default 24h.
	// The stream deletes a message at that age whatever its state: one
	// not yet decided, or decided with outputs not yet stored (an output
	// stream full, the gateway stopped), then never ends. At least
	// minIngressMaxAge and DuplicateWindow; agentgw_ingress_oldest_unacked_seconds
	// shows how close the oldest waiting message is.
	IngressMaxAge time.Duration `yaml:"ingress_max_age"`
	// DuplicateWindow applies to every stream and must cover MaxTTL+Skew
	// (ingress), DecisionTTL+Skew (outputs: an output re-emitted after a
	// crash or a lost PubAck later than the window may be stored twice,
	// and its decision token must then have expired) and the longest
	// redelivery delay. Default 20m.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MaxMsgsPerOutput caps each output stream (0 = unlimited). With
	// discard new, a full stream pushes back instead of dropping.
	MaxMsgsPerOutput int64 `yaml:"max_msgs_per_output"`
	// IngressMaxBytes caps the ingress stream's storage (0 = unlimited),
	// so that publishers cannot fill the account's JetStream storage and
	// leave the gateway no room for its outputs. With a cap the stream
	// discards new: a publish that does not fit is refused (the publisher
	// gets the error), and nothing stored is dropped.
	IngressMaxBytes int64 `yaml:"ingress_max_bytes"`
}

// ConsumerConfig configures the ingress pull consumer.
type ConsumerConfig struct {
	// Durable is the consumer name. Default "agentgw".
	Durable string `yaml:"durable"`
	// Batch is the most messages fetched and committed together. Default 256.
	Batch int `yaml:"batch"`
	// Workers verify in parallel. Default GOMAXPROCS.
	Workers int `yaml:"workers"`
	// AckWait before JetStream redelivers. Default 30s.
	AckWait time.Duration `yaml:"ack_wait"`
	// FetchWait is the longest the decider's source waits for a first
	// message before it looks again; a persistent pull request expires
	// after 5 × FetchWait and is renewed. Default 1s.
	FetchWait time.Duration `yaml:"fetch_wait"`
	// Partitions splits ingress by agent (deterministic subject
	// partitioning). Fixed per deployment. Default 1.
	Partitions int `yaml:"partitions"`
	// FairTenants gives every configured tenant its own queue (consumer)
	// per partition and every batch an equal share of each, so one
	// tenant's flood cannot starve the others. Turning it off again, or
	// removing a tenant, is done with ingress drained, and scaled out
	// every change of it with every instance stopped: a start refuses
	// tenant queues that would end a message twice or never
	// (docs/performance.md).
	FairTenants bool `yaml:"fair_tenants"`
}

// ScaleOutConfig configures one instance of a scaled-out deployment.
// Every instance of a deployment must agree on everything but Instance,
// so one file serves every machine with `agentgw serve --instance NAME`.
type ScaleOutConfig struct {
	// Instance names this process: 1–64 of [A-Za-z0-9_-], unique in the
	// deployment. Required.
	Instance string `yaml:"instance"`
	// LeaseTTL is how long a partition lease lives without renewal: the
	// longest a dead instance's partitions wait for a new owner. Default
	// 15s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// LeaseRenew is how often a held lease is renewed. Default TTL/3.
	LeaseRenew time.Duration `yaml:"lease_renew"`
	// LeaseMargin is how much before the server could expire a lease its
	// holder stops the partition. Default TTL/5. See store/lease/doc.go for
	// what it must cover.
	LeaseMargin time.Duration `yaml:"lease_margin"`
	// JournalMaxAge is how long journal records are kept, and so the
	// window a new owner replays. Default, and minimum: the longest any
	// ledger record matters (the freshness span, limits.max_ttl + 2 ×
	// limits.skew, or the approval TTL + limits.skew, whichever is
	// longer) plus consumer.ack_wait and a minute (journalWindow);
	// outstanding responses are in the holds bucket, not the journal.
	JournalMaxAge time.Duration `yaml:"journal_max_age"`
}

// DefaultConfig returns the defaults; Audience, DataDir and Catalog still
// need values.
func DefaultConfig() Config {
	return Config{
		Limits: Limits{
			MaxBodyBytes:          64 << 10,
			MaxTTL:                5 * time.Minute,
			Skew:                  30 * time.Second,
			MaxCredentialLifetime: 24 * time.Hour,
			DecisionTTL:           5 * time.Minute,
			ApprovalTTL:           15 * time.Minute,
		},
		Streams: StreamsConfig{
			Replicas:        1,
			MaxAge:          7 * 24 * time.Hour,
			IngressMaxAge:   24 * time.Hour,
			DuplicateWindow: 20 * time.Minute,
		},
		Consumer: ConsumerConfig{
			Durable:    "agentgw",
			Batch:      256,
			AckWait:    30 * time.Second,
			FetchWait:  time.Second,
			Partitions: 1,
		},
		ReloadInterval: 2 * time.Second,
		NotifySenders:  true,
	}
}

// LoadConfig reads a YAML (or JSON) config file strictly over the defaults,
// applies overrides (command-line flags) and validates the result.
func LoadConfig(path string, overrides ...func(*Config)) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gateway: config: %w", err)
	}
	cfg := DefaultConfig()
	if err := decodeStrict(data, &cfg); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.Path = path
			return Config{}, ce
		}
		return Config{}, fmt.Errorf("gateway: config %s: %w", path, err)
	}
	cfg.dir = filepath.Dir(path)
	cfg.resolvePaths()
	for _, o := range overrides {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.Path = path
		}
		return Config{}, err
	}
	return cfg, nil
}

// Path resolves p relative to the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

func (c *Config) resolvePaths() {
	c.DataDir = c.Path(c.DataDir)
	c.Catalog = c.Path(c.Catalog)
	c.Keys.Signing = c.Path(c.Keys.Signing)
	c.Keys.Curve = c.Path(c.Keys.Curve)
	for i, p := range c.Keys.AcceptedCurves {
		c.Keys.AcceptedCurves[i] = c.Path(p)
	}
	c.NATS.Creds = c.Path(c.NATS.Creds)
	c.NATS.NKey = c.Path(c.NATS.NKey)
	c.NATS.TLS.CA = c.Path(c.NATS.TLS.CA)
	c.NATS.TLS.Cert = c.Path(c.NATS.TLS.Cert)
	c.NATS.TLS.Key = c.Path(c.NATS.TLS.Key)
	c.Revocations.File = c.Path(c.Revocations.File)
	c.Tracing.File = c.Path(c.Tracing.File)
	for i, p := range c.Policies {
		c.Policies[i] = c.Path(p)
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Audience == "" {
		add("audience is required")
	}
	if c.DataDir == "" {
		add("data_dir is required")
	}
	if c.Catalog == "" {
		add("catalog is required")
	}
	if c.Keys.Signing == "" || c.Keys.Curve == "" {
		add("keys.signing and keys.curve are required")
	}
	if n := len(c.Keys.AcceptedCurves); n > MaxAcceptedCurves {
		add("keys.accepted_curves names %d keys; at most %d", n, MaxAcceptedCurves)
	}
	for i, p := range c.Keys.AcceptedCurves {
		if p == "" {
			add("keys.accepted_curves[%d] is empty", i)
		}
	}
	if len(c.Tenants) == 0 {
		add("at least one tenant is required")
	}
	if err := c.Tracing.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Budgets.Validate(); err != nil {
		// A negative rate would read as unlimited.
		add("budgets: %v", err)
	}
	for name, t := range c.Tenants {
		if !subjects.ValidToken(name) || name == subjects.UnroutableTenant {
			add("tenant %q: name must match [a-z0-9_-]{1,64} and not be the reserved %q", name, subjects.UnroutableTenant)
		}
		if len(t.Issuers) == 0 {
			add("tenant %q: at least one issuer is required", name)
		}
		for _, iss := range t.Issuers {
			if !subjects.ValidKey(iss, 'A') {
				add("tenant %q: issuer %q is not an account public key (A...)", name, identity.SafeText(iss))
			}
		}
	}
	l := c.Limits
	if l.MaxBodyBytes <= 0 || l.MaxBodyBytes > 1<<20 {
		add("limits.max_body_bytes must be in (0, 1 MiB]")
	}
	if l.MaxTTL <= 0 || l.MaxTTL > maxMaxTTL {
		add("limits.max_ttl must be in (0, %s]", maxMaxTTL)
	}
	if l.Skew < 0 || l.Skew > 5*time.Minute {
		add("limits.skew must be in [0, 5m]")
	}
	if l.MaxCredentialLifetime <= 0 {
		add("limits.max_credential_lifetime must be positive")
	}
	if l.ApprovalTTL > catalog.MaxWait {
		add("limits.approval_ttl must be at most %s", catalog.MaxWait)
	}
	if l.DecisionTTL <= 0 || l.ApprovalTTL <= 0 {
		add("limits.decision_ttl and limits.approval_ttl must be positive")
	}
	s := c.Streams
	if s.Replicas != 1 && s.Replicas != 3 && s.Replicas != 5 {
		add("streams.replicas must be 1, 3 or 5")
	}
	if s.DuplicateWindow < l.MaxTTL+l.Skew {
		add("streams.duplicate_window (%s) must cover limits.max_ttl + limits.skew (%s)", s.DuplicateWindow, l.MaxTTL+l.Skew)
	}
	// An output re-emitted after the window (the gateway down, or its
	// PubAcks lost, for that long between publishing and acknowledging)
	// is stored again; its decision token must be dead by then, so no
	// verifying consumer acts on the copy. (A consumer allowing more skew
	// than limits.skew needs the window to cover its own: README.)
	if s.DuplicateWindow < l.DecisionTTL+l.Skew {
		add("streams.duplicate_window (%s) must cover limits.decision_ttl + limits.skew (%s)", s.DuplicateWindow, l.DecisionTTL+l.Skew)
	}
	if s.MaxAge > 0 && s.MaxAge < s.DuplicateWindow {
		add("streams.max_age (%s) must cover streams.duplicate_window (%s): the server refuses an output stream whose duplicate window is longer than its max age", s.MaxAge, s.DuplicateWindow)
	}
	if s.MaxAge > 0 && l.ApprovalTTL > s.MaxAge {
		add("limits.approval_ttl (%s) must be at most streams.max_age (%s): the approval stream deletes a held request at that age, and approvers could no longer see or answer it", l.ApprovalTTL, s.MaxAge)
	}
	if s.MaxAge <= 0 || s.IngressMaxAge <= 0 {
		add("streams.max_age and streams.ingress_max_age must be positive")
	} else if floor := max(minIngressMaxAge, s.DuplicateWindow); s.IngressMaxAge < floor {
		add("streams.ingress_max_age (%s) must be at least %s: the ingress stream deletes a message at that age whether or not it was decided and its outputs stored, and a message held back by a full output stream or a stopped gateway then never ends (docs/reliability.md)", s.IngressMaxAge, floor)
	}
	if s.IngressMaxBytes < 0 || s.MaxMsgsPerOutput < 0 {
		add("streams.ingress_max_bytes and streams.max_msgs_per_output must not be negative")
	}
	cc := c.Consumer
	if cc.Durable == "" || !subjects.ValidToken(cc.Durable) {
		add("consumer.durable must match [a-z0-9_-]{1,64}")
	}
	if cc.Batch <= 0 || cc.Batch > 4096 {
		add("consumer.batch must be in [1, 4096]")
	}
	if cc.Workers < 0 {
		add("consumer.workers must not be negative")
	}
	if cc.AckWait < time.Second {
		add("consumer.ack_wait must be at least 1s")
	}
	if cc.FetchWait < 100*time.Millisecond {
		add("consumer.fetch_wait must be at least 100ms")
	}
	if cc.FetchWait >= cc.AckWait {
		add("consumer.fetch_wait (%s) must be shorter than consumer.ack_wait (%s)", cc.FetchWait, cc.AckWait)
	}
	if e := pullExpiry(cc.FetchWait); e > maxRequestExpires {
		add("consumer.fetch_wait (%s) must be at most %s: the gateway's pulls last five of it (%s), and the ingress consumers serve none longer than %s", cc.FetchWait, maxRequestExpires/5, e, maxRequestExpires)
	}
	if cc.Partitions < 1 || cc.Partitions > 1024 {
		add("consumer.partitions must be in [1, 1024]")
	}
	if c.NATS.Creds != "" && c.NATS.NKey != "" {
		add("nats.creds and nats.nkey are alternatives; set one")
	}
	if c.NATS.TLS.Cert != "" && c.NATS.TLS.Key == "" || c.NATS.TLS.Cert == "" && c.NATS.TLS.Key != "" {
		add("nats.tls.cert and nats.tls.key go together")
	}
	if c.ReloadInterval < 0 {
		add("reload_interval must not be negative")
	}
	if so := c.ScaleOut; so != nil {
		if err := c.leaseConfig().Validate(); err != nil {
			add("scale_out: %v", err)
		}
		if so.JournalMaxAge != 0 && so.JournalMaxAge < c.journalWindow() {
			add("scale_out.journal_max_age (%s) must cover the longest-lived ledger record (%s)", so.JournalMaxAge, c.journalWindow())
		}
	}
	if c.Exchange != nil {
		if err := c.Exchange.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &ConfigError{Stage: StageValidate, Problems: errs}
	}
	return nil
}

// journalWindow is the shortest journal retention that keeps every
// record a partition's ledger still needs: replay and idempotency
// entries and replay markers (the freshness span, max_ttl + 2·skew: a
// message issued skew ahead of the clock is decided at once and stays
// fresh until its expires_at + skew), and held approvals. A partition
// rebuilt after a crash judges the messages in flight at the crash up
// to consumer.ack_wait before its clock (recoveredNow), so the records
// must outlive their need by that much too. The minute covers the
// difference between the NATS server's clock, which ages the journal,
// and the gateway's.
func (c Config) journalWindow() time.Duration {
	l := c.Limits
	return max(l.Freshness().Span(), l.ApprovalTTL+l.Skew) + c.Consumer.AckWait + time.Minute
}

// journalMaxAge is the configured journal retention, or its minimum.
func (c Config) journalMaxAge() time.Duration {
	if c.ScaleOut != nil && c.ScaleOut.JournalMaxAge != 0 {
		return c.ScaleOut.JournalMaxAge
	}
	return c.journalWindow()
}

// leaseConfig is the lease protocol's view of the configuration.
func (c Config) leaseConfig() lease.Config {
	so := c.ScaleOut
	return lease.Config{
		Instance:   so.Instance,
		Partitions: c.Consumer.Partitions,
		TTL:        so.LeaseTTL,
		Renew:      so.LeaseRenew,
		Margin:     so.LeaseMargin,
		Replicas:   c.Streams.Replicas,
	}
}
