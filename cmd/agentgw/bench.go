package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentgw/agentgw/internal/bench"
)

func benchCmd(args []string) int {
	c := newCmd("bench", "[--messages M] [--mix LIST] [--rate R] [--paced F] [--out FILE] [-s URL]", `
Measure the gateway against two baselines in one run, on one NATS server:
a raw relay (pull the ingress stream, republish with a Nats-Msg-Id, wait
for the PubAck, ack) and a crypto relay (the same plus one Ed25519 verify
per message). For every mix it runs raw, crypto and gateway on fresh
streams, publishing M pre-signed envelopes from N agents as fast as
possible (or at --rate), and reports msgs/s, end-to-end latency
percentiles (publish -> output on its subject), CPU, page faults and
allocations per message, peak RSS and the ratios gateway/raw and
gateway/crypto. Each scenario first decides W messages of its mix
(--warmup, unmeasured), so that the measured phase starts from a warm
process: heap grown, the gateway's ledger past its first memtables.

Mixes: plain (valid, plain payload), sealed (valid, --sealed-bytes sealed
payload, re-sealed to the consumer), hostile (bad signatures and
replays), mixed, or NAME=KIND:WEIGHT+... with kinds plain, sealed,
badsig, replay.

--crash adds a gateway run per mix that stops the gateway hard half way
(its connection closed under it, in this process) and starts a new one
on the same ledger, and reports how many messages the stop left in
flight and the time from the restart to the last of them decided.

Uses an embedded nats-server unless -s/--server is given ($NATS_URL
and NATS contexts do not apply: the default is the embedded server;
--creds is a NATS user .creds file for it). On an external
server it deletes and recreates the AGENTGW_* streams for every scenario,
so it refuses to start if they exist unless --force. Progress goes to
stderr, the table to stdout.`)
	def := bench.DefaultConfig()
	natsURL := c.fs.String("server", "", "external NATS server `URL` (default: an embedded server)")
	c.fs.StringVar(natsURL, "s", "", "external NATS server `URL` (default: an embedded server)")
	natsCreds := c.fs.String("creds", "", "NATS user .creds `file` for --server")
	force := c.fs.Bool("force", false, "with --server: delete existing AGENTGW_* streams")
	syncAlways := c.fs.Bool("sync-always", false, "embedded server fsyncs every write (sync_interval: always)")
	dir := c.fs.String("dir", "", "work directory kept after the run (default: a temporary one, removed)")
	messages := c.fs.Int("messages", def.Messages, "measured messages per scenario (M)")
	warmup := c.fs.Int("warmup", def.Warmup, "messages of the mix decided before each scenario's measured phase (W), after one per agent")
	agents := c.fs.Int("agents", def.Agents, "agent identities")
	tenants := c.fs.Int("tenants", def.Tenants, "tenants (agents are spread over them)")
	mixes := c.fs.String("mix", "plain,sealed,hostile", "comma-separated mixes")
	noBaselines := c.fs.Bool("no-baselines", false, "run the gateway only")
	rate := c.fs.Float64("rate", 0, "publish rate in msgs/s for every scenario (0: as fast as possible)")
	paced := c.fs.Float64("paced", 0, "also run the gateway at this fraction of its measured max rate per mix (e.g. 0.5)")
	repeat := c.fs.Int("repeat", 1, "run every scenario N times, interleaved, and report the median run")
	sealedBytes := c.fs.Int("sealed-bytes", def.SealedBytes, "plaintext bytes of a sealed payload")
	batch := c.fs.Int("batch", 0, "fetch batch of gateway and relays (0: gateway default)")
	workers := c.fs.Int("workers", 0, "verify workers of gateway and crypto relay (0: GOMAXPROCS)")
	instances := c.fs.Int("instances", 0, "run the gateway scaled out as N instances in this process sharing --partitions by lease (0: one gateway, single-instance mode)")
	partitions := c.fs.Int("partitions", 0, "ingress partitions, each with its own consumer and decider, and with --instances its own ledger (0: 1, or 6 with --instances)")
	fair := c.fs.Bool("fair-tenants", false, "gateway with consumer.fair_tenants (a queue per tenant)")
	noNotices := c.fs.Bool("no-notify-senders", false, "gateway with notify_senders off (no decision notice per message)")
	noNoticeAsked := c.fs.Bool("no-notice-asked", false, "agents' messages ask for no decision notice (Agentgw-Notify: none), the gateway keeps notify_senders on")
	crash := c.fs.Bool("crash", false, "also run the gateway once per mix with a hard stop and a restart half way, and report the time from the restart to the last message it left in flight decided (single instance)")
	timeout := c.fs.Duration("timeout", 0, "bound per scenario (0: 2m + 2ms per message)")
	cpuProfile := c.fs.String("cpuprofile", "", "write a CPU profile of each gateway scenario and of the MCP comparison's calls (name gets the scenario, or mcp, inserted when several)")
	traceOut := c.fs.String("trace", "", "write a runtime execution trace of each gateway scenario (see go tool trace -pprof=syscall)")
	memProfile := c.fs.String("memprofile", "", "write the allocation profile after each gateway scenario (cumulative for the process)")
	gwLog := c.fs.String("gateway-log", "", "file for the gateway's JSON decision log (default: discarded)")
	latencies := c.fs.String("latencies", "", "append every measured message's publish, PubAck and output times to this CSV `file` (all scenarios but --flood)")
	gcTimes := c.fs.String("gc-times", "", "append when each garbage-collection cycle of a measured phase ended, on the clock of --latencies, to this CSV `file` (all scenarios but --flood)")
	out := c.fs.String("out", "", "write the report as JSON to FILE")
	quiet := c.fs.Bool("quiet", false, "no progress lines")
	flood := c.fs.Bool("flood", false, "run only the flood-isolation scenario: one tenant floods (--messages bad signatures and replays), another sends at --flood-victim-rate; victim latency with and without the flood")
	floodFloor := c.fs.Bool("flood-floor", false, "with --flood, publish the flood to a stream nothing reads: the victim's latency beside the flood's publisher and nats-server alone, a floor for any gateway on this machine")
	victimRate := c.fs.Float64("flood-victim-rate", def.FloodVictimRate, "the flood scenario's victim rate in msgs/s")
	mcpCalls := c.fs.Int("mcp-calls", def.MCPCalls, "MCP tool calls measured through agentgw and directly against the upstream server (0: none)")
	mcpConc := c.fs.Int("mcp-concurrency", 1, "MCP tool calls in flight at once on each path's one session (at most 64)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if *natsCreds != "" {
		if f := classify(*natsCreds); f.kind != kindUserCreds {
			return c.fail(&fileError{source: "--creds", want: "a NATS user .creds file", got: f}, "")
		}
	}
	cfg := bench.DefaultConfig()
	cfg.NATSURL, cfg.NATSCreds, cfg.Force, cfg.SyncAlways, cfg.Dir = *natsURL, *natsCreds, *force, *syncAlways, *dir
	cfg.Messages, cfg.Warmup, cfg.Agents, cfg.Tenants = *messages, *warmup, *agents, *tenants
	if *flood {
		// The flood scenario warms up with its primers only; an explicit
		// --warmup is refused by Validate.
		warmupSet := false
		c.fs.Visit(func(f *flag.Flag) { warmupSet = warmupSet || f.Name == "warmup" })
		if !warmupSet {
			cfg.Warmup = 0
		}
	}
	cfg.Baselines, cfg.Rate, cfg.Paced, cfg.SealedBytes = !*noBaselines, *rate, *paced, *sealedBytes
	cfg.Batch, cfg.Workers, cfg.Timeout, cfg.Repeat = *batch, *workers, *timeout, *repeat
	cfg.Instances, cfg.Partitions, cfg.FairTenants, cfg.NoNotices, cfg.NoNoticeAsked = *instances, *partitions, *fair, *noNotices, *noNoticeAsked
	cfg.MCPCalls, cfg.Crash, cfg.Flood, cfg.FloodVictimRate, cfg.FloodFloor = *mcpCalls, *crash, *flood, *victimRate, *floodFloor
	cfg.CPUProfile, cfg.Trace, cfg.MemProfile, cfg.GatewayLog = *cpuProfile, *traceOut, *memProfile, *gwLog
	cfg.Latencies, cfg.GCTimes, cfg.MCPConcurrency = *latencies, *gcTimes, *mcpConc
	if *quiet {
		cfg.ProgressEvery = -1
	}
	var err error
	if cfg.Mixes, err = bench.ParseMixes(*mixes); err != nil {
		return c.usageErr("--mix: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return c.usageErr("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg, bench.WithProgress(c.err))
	if rep != nil {
		_ = rep.WriteTable(c.out)
		if *out != "" {
			if werr := rep.WriteJSON(*out); werr != nil {
				return c.fail(werr, "")
			}
		}
	}
	if err != nil {
		hint := ""
		if errors.Is(err, bench.ErrStreamsExist) {
			hint = "pass --force only for a server whose agentgw streams may be wiped"
		}
		return c.fail(err, hint)
	}
	return exitOK
}
