// Package metrics owns the gateway's Prometheus metrics and the HTTP
// listener that serves them with health and readiness endpoints. Metric
// names follow Prometheus conventions (agentgw_..._total, _seconds); label
// values are tenants, routes, reason codes and gate names — never a key,
// a message id or anything an agent can make unbounded: tenants come from
// configuration, reasons from the reason table. Preset creates every
// labelled series at zero, so each exists from the first scrape. /readyz
// answers what the gateway's readiness function says (the gateway knows
// its connection, partitions and ledgers; this package does not).
package metrics
