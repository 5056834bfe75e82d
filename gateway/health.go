package gateway

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Readiness: the gateway is ready while it decides messages, which takes
// all of: Run past its setup and not yet returned, a NATS connection
// that is up, at least one partition held (all of them in single-instance
// mode, under a claim of every lease that has not lapsed; in scale-out
// mode those whose lease it won and whose ledger is rebuilt), and the
// ledger of each held partition open. /readyz answers
// with Readiness; agentgw_ready, agentgw_nats_connected and
// agentgw_partitions_held show the parts.

// errNotServing is Readiness before Run has set everything up, or after it
// returned.
var errNotServing = errors.New("gateway: not serving (starting up or stopped)")

// Readiness reports nil while the gateway decides messages, or what stops it.
func (g *Gateway) Readiness() error {
	if !g.serving.Load() {
		return errNotServing
	}
	nc := g.conn.Load()
	if nc == nil {
		return errNotServing
	}
	if st := nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("gateway: NATS connection %s", st)
	}
	held := 0
	for _, l := range g.ledgers() {
		if l == nil || l.Closed() {
			return errors.New("gateway: a held partition's ledger is closed")
		}
		held++
	}
	if held == 0 {
		return errors.New("gateway: no partition held")
	}
	if g.sole != nil && (!g.sole.deciding.Load() || !g.soleValid()) {
		return errors.New("gateway: the single instance's leases lapsed; claiming them again")
	}
	return nil
}

// registerHealth registers the gauges of readiness and the connection.
func (g *Gateway) registerHealth() {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	g.metrics.GaugeFunc("agentgw_ready", "1 while the gateway decides messages (what /readyz answers), else 0.", func() float64 {
		return b2f(g.Readiness() == nil)
	})
	g.metrics.GaugeFunc("agentgw_nats_connected", "1 while the NATS connection is up, else 0.", func() float64 {
		nc := g.conn.Load()
		return b2f(nc != nil && nc.IsConnected())
	})
	g.metrics.CounterFunc("agentgw_nats_reconnects_total", "Times the NATS connection was re-established.", func() float64 {
		if nc := g.conn.Load(); nc != nil {
			return float64(nc.Stats().Reconnects)
		}
		return 0
	})
	g.metrics.GaugeFunc("agentgw_partitions_held", "Ingress partitions this instance decides now.", func() float64 {
		switch {
		case !g.serving.Load():
			return 0
		case g.scale == nil:
			return float64(g.cfg.Consumer.Partitions) // all of them, on one ledger
		}
		return float64(len(g.ledgers()))
	})
}
