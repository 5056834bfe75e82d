// Package bench measures the gateway against two baselines in one run, on
// one NATS server: a raw relay (pull the ingress stream, republish each
// message with a Nats-Msg-Id, wait for the PubAck, ack; no checks) and a
// crypto relay (the same plus one Ed25519 verify per message). It owns
// the whole harness: test identities and credentials, a catalog with a
// plain and a sealed target, pre-signed message corpora, the publisher,
// an observer of the output subjects, latency histograms, process CPU,
// allocation and RSS accounting, and the report (table and JSON).
//
// Every scenario runs on freshly created streams and a fresh ledger, so
// scenarios do not interfere. Latency is agent publish time → the output
// seen by a core subscriber on agentgw.cap.> / agentgw.denied.> /
// agentgw.approval.>, joined on the ingress stream sequence that every
// output carries (header Agentgw-Ingress-Seq).
//
// It knows how to configure and start a gateway (package gateway) but
// changes nothing in it, and it never asserts on speed: Run reports, the
// caller judges. It refuses to touch an external server that already has
// agentgw streams unless told to (Config.Force): it deletes and recreates
// them for every scenario.
package bench
