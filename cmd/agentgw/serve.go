package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/tracing"
)

func serveCmd(args []string) int {
	c := newCmd("serve", "--config FILE", `
Run the gateway against an external NATS server or cluster, as configured
in FILE (nats.url, nats.creds, nats.tls). Logs JSON to stderr. SIGHUP
reloads policies, catalog and revocations; SIGINT/SIGTERM finish the
batch in hand and stop.

Scale-out: run the same FILE on N machines, each with its own
--instance NAME; the instances share consumer.partitions by lease
(docs/scale-out.md).`)
	path := c.fs.String("config", "", "gateway config file (YAML)")
	instance := c.fs.String("instance", "", "scale-out: this instance's name, unique in the deployment (sets scale_out.instance; enables scale_out with its defaults if the file has none)")
	level := c.fs.String("log-level", "info", "debug, info, warn or error")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.require("config"); !ok {
		return code
	}
	hup, stopHUP := catchHUP()
	defer stopHUP()
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		return c.usageErr("--log-level: %v", err)
	}
	cfg, err := gateway.LoadConfig(*path, func(cfg *gateway.Config) {
		if *instance == "" {
			return
		}
		if cfg.ScaleOut == nil {
			cfg.ScaleOut = &gateway.ScaleOutConfig{}
		}
		cfg.ScaleOut.Instance = *instance
	})
	if err != nil {
		return c.fail(err, gateway.ConfigHint(err))
	}
	log := zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Logger()
	tp, shutdown, err := tracing.Setup(context.Background(), cfg.Tracing, "agentgw")
	if err != nil {
		return c.fail(err, "set tracing.exporter to none, stdout, file (with tracing.file) or otlp")
	}
	defer shutdown(context.Background())
	gw, err := gateway.New(cfg, gateway.WithLogger(log), gateway.WithTracerProvider(tp))
	if err != nil {
		return c.fail(err, "")
	}
	defer gw.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go reloadOnHUP(ctx, hup, gw, c)
	if err := gw.Run(ctx); err != nil {
		hint := gateway.SetupHint(err, *path)
		if hint == "" {
			hint = "check nats.url, nats.creds and nats.tls in " + *path
		}
		return c.fail(err, hint)
	}
	return exitOK
}
