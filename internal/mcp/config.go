package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/yamlerr"
	"github.com/agentgw/agentgw/subjects"
)

// ErrConfig: a Config (or an endpoint or bridge setting) is unusable.
var ErrConfig = errors.New("mcp: invalid config")

// Config is the MCP mapping file (mcp.yaml), strictly decoded.
type Config struct {
	// Tenant whose targets the tools are. Required.
	Tenant string `yaml:"tenant" json:"tenant"`
	// Tools maps MCP tool names to catalog targets. Required.
	Tools []Tool `yaml:"tools" json:"tools"`
	// Endpoint configures `agentgw mcp serve`; zero when only bridging.
	Endpoint EndpointConfig `yaml:"endpoint" json:"endpoint"`
}

// Tool is one MCP tool and the catalog target behind it.
type Tool struct {
	// Name is the MCP tool name clients see. Required.
	Name string `yaml:"name" json:"name"`
	// Target is the catalog target. Required; the target must have a
	// consumer_xkey (arguments are sealed end to end) and a
	// response_deadline (the result comes back as a response).
	Target string `yaml:"target" json:"target"`
	// Capability is the target's kind in the catalog. Zero: tool_call.
	Capability envelope.Capability `yaml:"capability" json:"capability"`
	// Scope is the credential scope the catalog requires for Target;
	// without EndpointConfig.Catalog, tools/list shows the tool only to
	// principals holding it. Required.
	Scope string `yaml:"scope" json:"scope"`
	// Description shown in tools/list.
	Description string `yaml:"description" json:"description"`
	// InputSchema is the JSON Schema of the arguments shown in
	// tools/list: an object with "type": "object", as MCP requires.
	// Zero: {"type":"object"}.
	InputSchema string `yaml:"input_schema" json:"input_schema"`
	// Upstream is where the bridge calls the tool. Zero for a tool that
	// only the endpoint serves.
	Upstream Upstream `yaml:"upstream" json:"upstream"`
}

// Upstream is an MCP server the bridge calls. Exactly one of URL and
// Command is set.
type Upstream struct {
	// URL of a Streamable HTTP MCP server.
	URL string `yaml:"url" json:"url"`
	// Command runs a stdio MCP server: the program and its arguments.
	Command []string `yaml:"command" json:"command"`
	// Tool is the upstream tool name. Zero: the MCP tool's Name.
	Tool string `yaml:"tool" json:"tool"`
	// BearerEnv names an environment variable holding the bearer token
	// the bridge presents to URL. The token stays in the bridge.
	BearerEnv string `yaml:"bearer_env" json:"bearer_env"`
	// Env names the bridge's environment variables passed to Command,
	// each of which must be set. The command gets these, PATH and HOME,
	// and nothing else of the bridge's environment (not the other
	// upstreams' bearer tokens, nor NATS credentials). Only with
	// Command.
	Env []string `yaml:"env" json:"env"`
	// Timeout bounds one upstream call, connecting included: past it the
	// call is abandoned and the requester answered with an error (the
	// tool may still have acted). Keep it at most the target's
	// response_deadline in the catalog, after which the gateway takes no
	// answer. Zero: DefaultUpstreamTimeout. Negative is invalid.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// Concurrency is how many calls of this tool the bridge makes at
	// once: deliveries of its target handled together, answered in the
	// order they finish. 1 calls it one at a time, in the order the
	// gateway delivered the calls. Zero: DefaultUpstreamConcurrency. At
	// most client.MaxConcurrency; negative is invalid.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
}

// DefaultUpstreamConcurrency is the zero Upstream.Concurrency: as many
// calls at once as an MCP client may make of a server directly, without
// one slow call holding every other call of its tool.
const DefaultUpstreamConcurrency = 16

// DefaultUpstreamTimeout is the zero Upstream.Timeout: JetStream's
// default AckWait, after which an unacknowledged delivery comes again.
const DefaultUpstreamTimeout = 30 * time.Second

// EndpointConfig configures the MCP endpoint.
type EndpointConfig struct {
	// Resource is the endpoint's canonical URI (RFC 8707, RFC 9728):
	// bearer tokens must name it in aud. Required for serve.
	Resource string `yaml:"resource" json:"resource"`
	// AuthorizationServers are the issuers listed in the protected
	// resource metadata; a token from another issuer is refused.
	// Required for serve.
	AuthorizationServers []string `yaml:"authorization_servers" json:"authorization_servers"`
	// AllowedOrigins are the Origin header values accepted. A request
	// with any other Origin is refused (403); one without is accepted.
	AllowedOrigins []string `yaml:"allowed_origins" json:"allowed_origins"`
	// CallTimeout bounds a call that is not held for approval. Zero: 30 s.
	CallTimeout time.Duration `yaml:"call_timeout" json:"call_timeout"`
	// ApprovalWait bounds how long a call held for approval is waited
	// for. Zero: 5 minutes.
	ApprovalWait time.Duration `yaml:"approval_wait" json:"approval_wait"`
	// MaxCallsInFlight bounds the tools/call requests in flight for all
	// principals together, tasks included; more are refused
	// (too_many_calls). The calls of one session share a subscription on
	// the endpoint's one NATS connection, so there are at most as many
	// subscriptions as calls, and the server refuses one beyond the
	// account's max_subscriptions (per connection; 512 for tenant
	// accounts in the shipped configs) without closing the connection, so
	// a call past it would be sent and never hear its reply: keep this
	// below that limit. Zero: 448.
	MaxCallsInFlight int `yaml:"max_calls_in_flight" json:"max_calls_in_flight"`
	// GatewayAudience is the gateway's audience: credentials are
	// exchanged for it. Required for serve.
	GatewayAudience string `yaml:"gateway_audience" json:"gateway_audience"`
	// TrustedGateways are the gateways' public signing ('N') keys whose
	// replies are accepted. Required for serve.
	TrustedGateways []string `yaml:"trusted_gateways" json:"trusted_gateways"`
	// GatewayXKey is the gateway's public curve ('X') key that arguments
	// are sealed to. Required for serve.
	GatewayXKey string `yaml:"gateway_xkey" json:"gateway_xkey"`
	// ExchangeSubject is the token exchange's NATS subject. Zero:
	// agentgw.exchange.
	ExchangeSubject string `yaml:"exchange_subject" json:"exchange_subject"`
	// TrustedIssuers are the public account ('A') keys of the issuers
	// the token exchange signs the mapping's tenant's credentials with
	// (the gateway's issuer_seeds entry for Tenant, and the issuers it
	// trusts for that tenant). An exchange answer whose credential is
	// not signed by one of them is refused, whoever answered on
	// ExchangeSubject: the endpoint reads the principal and scopes it
	// files a token under from that credential. Required for serve.
	TrustedIssuers []string `yaml:"trusted_issuers" json:"trusted_issuers"`
	// KeyDir holds each principal's agent keys (one seed file pair per
	// principal, mode 0600). Zero: keys live in memory only.
	KeyDir string `yaml:"key_dir" json:"key_dir"`
	// Catalog is the gateway's catalog file and Policies its Cedar policy
	// files (the same files the gateway reads). Set together, they make
	// tools/list show a tool only when the catalog gate and the
	// authorize-stage policy decision allow (or hold for approval) the
	// principal; zero, tools/list filters on the credential's scopes
	// only. Either way every call passes every gate at the gateway.
	Catalog  string   `yaml:"catalog" json:"catalog"`
	Policies []string `yaml:"policies" json:"policies"`
	// ReloadInterval is how often Catalog and Policies are checked for
	// changes (content digest) and reloaded; a broken file keeps the old
	// version. Zero: 2 s; negative: load once at start.
	ReloadInterval time.Duration `yaml:"reload_interval" json:"reload_interval"`
}

// validate reports the problems of an endpoint configuration.
func (e EndpointConfig) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(e.Resource); err != nil || u.Scheme == "" || u.Host == "" || u.Fragment != "" {
		add("endpoint: resource %.120q is not an absolute URI without a fragment", e.Resource)
	}
	if len(e.AuthorizationServers) == 0 {
		add("endpoint: at least one authorization server is required")
	}
	for _, a := range e.AuthorizationServers {
		// An issuer is the first half of a principal's name (issuer, a
		// space, subject): one with a space could name another's.
		if u, err := url.Parse(a); err != nil || u.Scheme == "" || u.Host == "" ||
			strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) }) {
			add("endpoint: authorization server %.120q is not an absolute URL without spaces", a)
		}
	}
	if e.GatewayAudience == "" {
		add("endpoint: gateway_audience is required")
	}
	if x := e.ExchangeSubject; x != "" && (!subjects.ValidLiteral(x) || subjects.Stored(x)) {
		add("endpoint: exchange_subject %.120q is not a literal NATS subject that no gateway stream stores (every exchange request carries an IdP token)", x)
	}
	if len(e.TrustedGateways) == 0 {
		add("endpoint: at least one trusted gateway key is required")
	}
	for _, k := range e.TrustedGateways {
		if !subjects.ValidKey(k, 'N') {
			add("endpoint: trusted gateway %.72q is not a public server ('N') key", identity.SafeText(k))
		}
	}
	if len(e.TrustedIssuers) == 0 {
		add("endpoint: at least one trusted issuer key (trusted_issuers) is required")
	}
	for _, k := range e.TrustedIssuers {
		if !subjects.ValidKey(k, 'A') {
			add("endpoint: trusted issuer %.72q is not a public account ('A') key", identity.SafeText(k))
		}
	}
	if !subjects.ValidKey(e.GatewayXKey, 'X') {
		add("endpoint: gateway_xkey is not a public curve ('X') key")
	}
	if (e.Catalog == "") != (len(e.Policies) == 0) {
		add("endpoint: catalog and policies are set together or not at all")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

// Defaults of EndpointConfig.
const (
	DefaultCallTimeout  = 30 * time.Second
	DefaultApprovalWait = 5 * time.Minute
	// DefaultMaxCallsInFlight leaves 64 of the shipped tenant accounts'
	// 512 subscriptions per connection to the endpoint's own.
	DefaultMaxCallsInFlight = 448
)

var (
	toolName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// LoadConfig reads and validates a mapping file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return ParseConfig(data)
}

// ParseConfig decodes (strictly) and validates a mapping file.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := yamlerr.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrConfig, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports every problem at once; it fills zero Capability and
// Upstream.Tool with their defaults. A tool with an upstream whose
// pre-created consumer (BridgeConsumerName of the tenant and its target)
// nats-server would refuse, as longer than 255 bytes, is refused with an
// error wrapping client.ErrConsumerName too.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !subjects.ValidToken(c.Tenant) {
		add("tenant %.72q is not [a-z0-9_-]{1,64}", c.Tenant)
	}
	if len(c.Tools) == 0 {
		add("at least one tool is required")
	}
	var names, targets []string
	consumers := client.ConsumerNames{}
	for i := range c.Tools {
		t := &c.Tools[i]
		if !toolName.MatchString(t.Name) {
			add("tool %d: name %.72q is not [A-Za-z0-9_.-]{1,128}", i, t.Name)
		}
		if slices.Contains(names, t.Name) {
			add("tool %q: listed twice", t.Name)
		}
		names = append(names, t.Name)
		if !subjects.ValidTarget(t.Target) {
			add("tool %q: target %.72q is not a catalog target name", t.Name, t.Target)
		}
		if slices.Contains(targets, t.Target) {
			add("tool %q: target %s mapped twice", t.Name, t.Target)
		}
		targets = append(targets, t.Target)
		// The bridge, bound as a tenant user, reads the target with the
		// pre-created consumer of this name.
		if (t.Upstream.URL != "" || len(t.Upstream.Command) > 0) && subjects.ValidToken(c.Tenant) && subjects.ValidTarget(t.Target) {
			if err := consumers.Add(BridgeConsumerName(c.Tenant, t.Target), "target "+t.Target); err != nil {
				errs = append(errs, fmt.Errorf("tool %q: %w", t.Name, err))
			}
		}
		if t.Capability == "" {
			t.Capability = envelope.ToolCall
		}
		switch t.Capability {
		case envelope.Read, envelope.ToolCall, envelope.WorkflowCommand, envelope.Delegate:
		default:
			add("tool %q: capability %.32q is not read, tool_call, workflow_command or delegate", t.Name, t.Capability)
		}
		if t.Scope == "" {
			add("tool %q: scope is required", t.Name)
		}
		if t.InputSchema != "" {
			// The MCP SDK requires a tool's input schema to say type
			// "object" (AddTool panics otherwise), as the protocol does.
			var m map[string]json.RawMessage
			switch {
			case json.Unmarshal([]byte(t.InputSchema), &m) != nil || m == nil:
				add("tool %q: input_schema is not a JSON object", t.Name)
			case string(m["type"]) != `"object"`:
				add("tool %q: input_schema must have \"type\": \"object\"", t.Name)
			}
		}
		u := &t.Upstream
		if u.URL != "" && len(u.Command) > 0 {
			add("tool %q: upstream has both url and command", t.Name)
		}
		if u.Tool == "" {
			u.Tool = t.Name
		}
		if u.Timeout < 0 {
			add("tool %q: upstream timeout must not be negative", t.Name)
		}
		if u.Concurrency < 0 || u.Concurrency > client.MaxConcurrency {
			add("tool %q: upstream concurrency must be in [0, %d]", t.Name, client.MaxConcurrency)
		}
		if len(u.Env) > 0 && len(u.Command) == 0 {
			add("tool %q: upstream env is only for a command", t.Name)
		}
		for _, name := range u.Env {
			if !envName.MatchString(name) {
				add("tool %q: upstream env %.72q is not a variable name", t.Name, name)
			}
		}
	}
	e := c.Endpoint
	if e.CallTimeout < 0 || e.ApprovalWait < 0 || e.MaxCallsInFlight < 0 {
		add("endpoint: call_timeout, approval_wait and max_calls_in_flight must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

// tool returns the tool named name.
func (c *Config) tool(name string) (*Tool, bool) {
	for i := range c.Tools {
		if c.Tools[i].Name == name {
			return &c.Tools[i], true
		}
	}
	return nil, false
}
