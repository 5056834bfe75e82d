package bench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config says what to run. Start from DefaultConfig.
type Config struct {
	// NATSURL is an external server. Empty: an embedded nats-server
	// (JetStream on file storage in Dir), reached over loopback TCP.
	NATSURL string
	// NATSCreds is a .creds file for the NATS login (external server only).
	NATSCreds string
	// Force allows deleting existing agentgw streams on an external
	// server. Without it Run refuses to start if any exist.
	Force bool
	// SyncAlways makes the embedded server fsync every JetStream write
	// (sync_interval: always). Ignored with NATSURL.
	SyncAlways bool
	// Dir holds keys, the catalog, ledgers and the embedded server's
	// store. Empty: a temporary directory removed at the end.
	Dir string

	// Messages is M, the measured messages per scenario (warm-up not
	// counted). Default 20000.
	Messages int
	// Warmup is W, messages of the scenario's own mix published at full
	// speed and decided after the primer and before the measured phase,
	// which then starts from a warm process: heap grown, the gateway's
	// ledger past Pebble's first memtables (each a fresh
	// mapping whose every page faults on first touch). Zero: the primer
	// alone (one message per agent). Default 20000.
	Warmup int
	// Agents is the number of agent identities, spread over Tenants.
	// Default 8.
	Agents int
	// Tenants is the number of tenants, each with its own issuer.
	// Default 2.
	Tenants int
	// Mixes are the message mixes; each gets its own scenarios.
	// Default: plain, sealed, hostile.
	Mixes []Mix
	// Baselines runs the raw and crypto relays on every mix before the
	// gateway. Default true.
	Baselines bool
	// Rate is the publish rate in messages per second for every scenario;
	// zero publishes as fast as possible.
	Rate float64
	// Paced, when in (0, 1], adds a gateway scenario per mix published at
	// Paced × the rate the gateway reached on that mix at full speed
	// (the latency-under-load figure). Zero: none.
	Paced float64
	// Repeat runs every scenario this many times (interleaved: raw,
	// crypto, gateway, raw, …) and reports the median run, which is what
	// a noisy shared machine needs. Zero means 1.
	Repeat int
	// SealedBytes is the plaintext size of a sealed payload. Default 1024.
	SealedBytes int
	// Batch is the fetch batch of the gateway and of the relays.
	// Zero: the gateway default (256).
	Batch int
	// Workers is the verify parallelism of the gateway and of the crypto
	// relay. Zero: GOMAXPROCS.
	Workers int
	// Instances, when > 0, runs the gateway in scale-out mode as that
	// many instances in this process, each on its own connection and
	// ledgers, sharing Partitions by lease (docs/scale-out.md). Zero: one
	// gateway in single-instance mode.
	Instances int
	// FairTenants turns on consumer.fair_tenants (a queue per tenant).
	FairTenants bool
	// NoNotices turns notify_senders off: no decision notice per
	// authenticated message on the reply stream.
	NoNotices bool
	// NoNoticeAsked: the agents' messages ask for no decision notice
	// (Agentgw-Notify: none), as agents that read none do; the gateway
	// keeps notify_senders on.
	NoNoticeAsked bool
	// Partitions is the ingress partition count (consumer.partitions):
	// each partition has its own consumer and decider, so their serial
	// phases (ledger gates, commit) overlap; one gateway keeps one ledger
	// for all of them, scaled out each partition has its own. Zero: 1, or
	// 6 with Instances > 0 (divisible by 1, 2 and 3 instances).
	Partitions int
	// Timeout bounds one scenario from its first publish. Zero: 2 minutes
	// plus 2 ms per message.
	Timeout time.Duration
	// ProgressEvery is the interval of progress lines. Default 1s;
	// negative disables them.
	ProgressEvery time.Duration

	// CPUProfile, when set, writes a CPU profile of each gateway
	// scenario's measured phase. With several gateway scenarios the
	// scenario name is inserted before the extension
	// (cpu.prof → cpu.gateway-plain.prof).
	CPUProfile string
	// Trace, when set, writes a runtime execution trace of each gateway
	// scenario's measured phase, named like CPUProfile. It shows where
	// the gateway waits rather than computes: go tool trace
	// -pprof=syscall|sync|net FILE turns it into blocking profiles.
	Trace string
	// MemProfile, when set, writes the allocation profile at the end of
	// each gateway scenario, named like CPUProfile. It is cumulative for
	// the process: run one gateway scenario, or diff with -base.
	MemProfile string
	// GatewayLog, when set, is a file the gateway writes its JSON log to
	// (one line per decision); empty discards the log.
	GatewayLog string
	// Latencies, when set, is a CSV file every run of a scenario but the
	// flood's appends its measured messages to, one line each: scenario,
	// run number, ingress sequence, and when the message was published,
	// stored (its PubAck) and first seen as an output, in µs since the
	// run's first publish, with its latency. With GatewayLog, the
	// decisions of a slow message's neighbours say where it waited.
	Latencies string
	// GCTimes, when set, is a CSV file every run of a scenario but the
	// flood's appends the garbage-collection cycles of its measured
	// phase to, one line each: scenario, run number, the cycle's number
	// and when its marking ended, in µs since the run's first publish,
	// the clock of Latencies: set beside it, it shows which slow
	// messages a cycle coincided with.
	GCTimes string
	// Crash adds a gateway scenario per mix ("<mix>+crash") that stops
	// the gateway hard once half the measured outputs are seen and
	// starts a new one on the same ledger: the report gives the messages
	// in flight at the stop and the time from the restart to the last of
	// them decided (Result.Crash). The gateway runs in this process, so
	// the stop is a stand-in for kill -9: its connection is closed under
	// it, so it acknowledges and publishes nothing more, what it fetched
	// stays delivered and unacknowledged, and what it committed stays in
	// the ledger. Single-instance mode only.
	Crash bool
	// Flood runs the flood-isolation scenario instead of the mixes and
	// the MCP comparison: the first tenant's agents publish Messages
	// hostile messages (bad signatures and replays) at full speed while
	// the second tenant's publish valid ones at FloodVictimRate, and the
	// victim's latency is reported with and without the flood.
	Flood bool
	// FloodVictimRate is the victim's rate in msgs/s. Default 200.
	FloodVictimRate float64
	// FloodFloor publishes the flood to a stream of its own that nothing
	// reads, instead of the ingress stream: the victim's latency beside
	// the flood's publisher and nats-server storing it, with none of the
	// gateway's work on it. No gateway on the same machine can keep its
	// victim faster than that.
	FloodFloor bool
	// MCPCalls is how many MCP tool calls are measured through agentgw
	// (endpoint, gateway, bridge) and directly against the upstream
	// server, interleaved, after the scenarios. Zero: no MCP measurement.
	MCPCalls int
	// MCPConcurrency is how many of those calls are in flight at once on
	// each path's one MCP session: at most 64, the endpoint's bound per
	// principal. Zero: 1.
	MCPConcurrency int
}

// DefaultConfig returns short, useful defaults.
func DefaultConfig() Config {
	return Config{
		Messages:        20000,
		Warmup:          20000,
		Agents:          8,
		Tenants:         2,
		Mixes:           []Mix{MixPlain, MixSealed, MixHostile},
		Baselines:       true,
		SealedBytes:     1024,
		ProgressEvery:   time.Second,
		MCPCalls:        200,
		FloodVictimRate: 200,
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Messages < 1 {
		add("messages must be at least 1")
	}
	if c.Warmup < 0 || c.Warmup > 10_000_000 {
		add("warmup must be in [0, 10000000]")
	}
	if c.Flood && c.Warmup > 0 {
		add("warmup applies to the mix scenarios, not to flood")
	}
	if c.MCPCalls < 0 {
		add("mcp calls must not be negative")
	}
	if c.MCPConcurrency < 0 || c.MCPConcurrency > 64 {
		add("mcp concurrency must be in [0, 64]")
	}
	if c.Instances < 0 || c.Instances > 16 {
		add("instances must be in [0, 16]")
	}
	if c.Partitions < 0 || c.Partitions > 1024 || c.Instances > 0 && c.Partitions > 0 && c.Partitions < c.Instances {
		add("partitions must be in [instances, 1024]")
	}
	if c.Agents < 1 || c.Agents > 10000 {
		add("agents must be in [1, 10000]")
	}
	if c.Tenants < 1 || c.Tenants > c.Agents {
		add("tenants must be in [1, agents]")
	}
	if len(c.Mixes) == 0 {
		add("at least one mix is required")
	}
	names := map[string]bool{}
	for _, m := range c.Mixes {
		if err := m.validate(); err != nil {
			errs = append(errs, err)
		}
		if names[m.Name] {
			add("mix %q given twice", m.Name)
		}
		names[m.Name] = true
	}
	if c.Flood && c.Tenants < 2 {
		add("flood needs at least 2 tenants")
	}
	if c.Flood && (c.FloodVictimRate <= 0 || c.FloodVictimRate > 10000) {
		add("flood victim rate must be in (0, 10000]")
	}
	if c.FloodFloor && !c.Flood {
		add("flood floor needs flood")
	}
	if c.Flood && c.NATSURL != "" {
		add("flood runs on the embedded server only")
	}
	if c.Rate < 0 {
		add("rate must not be negative")
	}
	if c.Paced < 0 || c.Paced > 1 {
		add("paced must be in [0, 1]")
	}
	if c.Repeat < 0 || c.Repeat > 25 {
		add("repeat must be in [0, 25]")
	}
	if c.SealedBytes < 64 || c.SealedBytes > 32<<10 {
		add("sealed bytes must be in [64, 32768]")
	}
	if c.Batch < 0 || c.Batch > 4096 {
		add("batch must be in [0, 4096]")
	}
	if c.Workers < 0 {
		add("workers must not be negative")
	}
	if c.Timeout < 0 {
		add("timeout must not be negative")
	}
	if c.Crash && c.Instances > 0 {
		add("crash runs a single gateway; it does not combine with instances")
	}
	if c.SyncAlways && c.NATSURL != "" {
		add("sync-always applies to the embedded server only; configure sync_interval on the external one")
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

func (c *Config) repeat() int { return max(c.Repeat, 1) }

func (c *Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 2*time.Minute + time.Duration(c.Messages)*2*time.Millisecond
}

// Mix is a message mix: relative weights of each kind of message. The
// kinds are interleaved in a fixed repeating pattern, so counts are exact
// for every M.
type Mix struct {
	Name string `json:"name"`
	// Plain is a valid envelope with a small plain payload to a plain
	// target: allowed.
	Plain int `json:"plain"`
	// Sealed is a valid envelope whose payload (SealedBytes of JSON) is
	// sealed to the gateway and re-sealed to the target's consumer:
	// allowed.
	Sealed int `json:"sealed"`
	// BadSig is a valid envelope whose body was changed after signing:
	// every gate up to and including the signature runs; denied
	// bad_signature.
	BadSig int `json:"badsig"`
	// Replay is an exact copy (body, credential, signature) of a message
	// the gateway already allowed, without the agent's Nats-Msg-Id so
	// JetStream does not de-duplicate it: denied replay_detected.
	Replay int `json:"replay"`
}

// The preset mixes.
var (
	MixPlain   = Mix{Name: "plain", Plain: 1}
	MixSealed  = Mix{Name: "sealed", Sealed: 1}
	MixHostile = Mix{Name: "hostile", BadSig: 1, Replay: 1}
	MixMixed   = Mix{Name: "mixed", Plain: 4, Sealed: 4, BadSig: 1, Replay: 1}
)

func (m Mix) validate() error {
	if m.Name == "" || strings.ContainsAny(m.Name, " /@\t") {
		return fmt.Errorf("mix %q: name must be non-empty without spaces, '/' or '@'", m.Name)
	}
	if m.Plain < 0 || m.Sealed < 0 || m.BadSig < 0 || m.Replay < 0 || m.total() == 0 {
		return fmt.Errorf("mix %q: weights must be non-negative and not all zero", m.Name)
	}
	return nil
}

func (m Mix) total() int { return m.Plain + m.Sealed + m.BadSig + m.Replay }

// kind returns the kind of message i.
func (m Mix) kind(i int) kind {
	p := i % m.total()
	switch {
	case p < m.Plain:
		return kindPlain
	case p < m.Plain+m.Sealed:
		return kindSealed
	case p < m.Plain+m.Sealed+m.BadSig:
		return kindBadSig
	}
	return kindReplay
}

// String is the spec ParseMix reads back.
func (m Mix) String() string {
	var parts []string
	for _, w := range []struct {
		k string
		v int
	}{{"plain", m.Plain}, {"sealed", m.Sealed}, {"badsig", m.BadSig}, {"replay", m.Replay}} {
		if w.v > 0 {
			parts = append(parts, w.k+":"+strconv.Itoa(w.v))
		}
	}
	return m.Name + "=" + strings.Join(parts, "+")
}

// ParseMix reads a preset name (plain, sealed, hostile, mixed) or a
// custom mix "NAME=KIND:WEIGHT+KIND:WEIGHT…" with kinds plain, sealed,
// badsig and replay, e.g. "dirty=plain:8+badsig:1+replay:1".
func ParseMix(s string) (Mix, error) {
	for _, p := range []Mix{MixPlain, MixSealed, MixHostile, MixMixed} {
		if s == p.Name {
			return p, nil
		}
	}
	name, spec, ok := strings.Cut(s, "=")
	if !ok {
		return Mix{}, fmt.Errorf("bench: mix %q: not a preset (plain, sealed, hostile, mixed) nor NAME=KIND:WEIGHT+…", s)
	}
	m := Mix{Name: name}
	for _, part := range strings.Split(spec, "+") {
		k, v, ok := strings.Cut(part, ":")
		w, err := strconv.Atoi(v)
		if !ok || err != nil || w < 0 {
			return Mix{}, fmt.Errorf("bench: mix %q: %q is not KIND:WEIGHT", s, part)
		}
		switch k {
		case "plain":
			m.Plain += w
		case "sealed":
			m.Sealed += w
		case "badsig":
			m.BadSig += w
		case "replay":
			m.Replay += w
		default:
			return Mix{}, fmt.Errorf("bench: mix %q: unknown kind %q (plain, sealed, badsig, replay)", s, k)
		}
	}
	if err := m.validate(); err != nil {
		return Mix{}, fmt.Errorf("bench: %w", err)
	}
	return m, nil
}

// ParseMixes reads a comma-separated list for ParseMix.
func ParseMixes(s string) ([]Mix, error) {
	var out []Mix
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		m, err := ParseMix(part)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// partitions is the ingress partition count the run uses.
func (c *Config) partitions() int {
	switch {
	case c.Instances == 0 && c.Partitions == 0:
		return 1
	case c.Partitions == 0:
		return 6
	}
	return c.Partitions
}
