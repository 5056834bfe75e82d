package gateway

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const jsHintNotEnabled = "JetStream is not enabled on the NATS server (nothing answers its API): add a jetstream block (with store_dir) to nats-server.conf and restart it"

// JetStream API error codes (nats-server's errors.json) that a
// deployment meets when the gateway sets up its streams, consumers and
// buckets.
const (
	jsClusterNoPeers         jetstream.ErrorCode = 10005 // no suitable peers for placement
	jsClusterNotAvailable    jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable
	jsClusterNotLeader       jetstream.ErrorCode = 10009 // JetStream cluster can not handle request
	jsInsufficientResources  jetstream.ErrorCode = 10023
	jsMaximumConsumers       jetstream.ErrorCode = 10026
	jsMaximumStreams         jetstream.ErrorCode = 10027
	jsMemoryResourcesExceed  jetstream.ErrorCode = 10028
	jsNotEnabledForAccount   jetstream.ErrorCode = 10039
	jsStorageResourcesExceed jetstream.ErrorCode = 10047
	jsStreamInvalidConfig    jetstream.ErrorCode = 10052
	jsStreamNameInUse        jetstream.ErrorCode = 10058
	jsStreamSubjectOverlap   jetstream.ErrorCode = 10065
	jsReplicasNotSupported   jetstream.ErrorCode = 10074 // replicas > 1 not supported in non-clustered mode
	jsNotEnabled             jetstream.ErrorCode = 10076
)

// SetupHint says what to change when Run failed with err while setting
// up JetStream, from the JetStream API error code err carries; config is
// the config file's path, named in the hint. It returns "" when err
// carries no code it knows: the caller's generic hint applies. A
// request nobody answered (nats.ErrNoResponders) means JetStream is off.
func SetupHint(err error, config string) string {
	if errors.Is(err, nats.ErrNoResponders) {
		// Nothing answers the JetStream API: the server runs without it.
		return jsHintNotEnabled
	}
	var jse jetstream.JetStreamError
	if !errors.As(err, &jse) || jse.APIError() == nil {
		return ""
	}
	switch jse.APIError().ErrorCode {
	case jsReplicasNotSupported:
		return fmt.Sprintf("the NATS server is a single node, not a JetStream cluster: set streams.replicas: 1 in %s (3 needs a three-node cluster)", config)
	case jsClusterNoPeers:
		return fmt.Sprintf("the cluster cannot place streams.replicas copies of a stream: fewer JetStream servers are up (or have room) than streams.replicas in %s; start every node, or set streams.replicas to at most the number of nodes", config)
	case jsClusterNotAvailable, jsClusterNotLeader:
		return "the JetStream cluster has no meta leader (still forming, or without a quorum of nodes): start the remaining nodes, then serve again"
	case jsInsufficientResources, jsStorageResourcesExceed, jsMemoryResourcesExceed:
		return fmt.Sprintf("JetStream has no room for the stream: raise max_file_store in the jetstream block of nats-server.conf (or the account's limits, or max_ha_assets), free disk, or lower streams.max_age in %s", config)
	case jsMaximumStreams:
		return "the gateway's NATS account may not create another stream: raise max_streams in its account's jetstream limits (the gateway needs 6 streams, 9 with scale_out)"
	case jsMaximumConsumers:
		return fmt.Sprintf("the gateway's NATS account may not create another consumer: raise max_consumers in its account's jetstream limits (the gateway needs one per consumer.partitions, and one more per tenant with consumer.fair_tenants, in %s)", config)
	case jsNotEnabledForAccount:
		return "JetStream is not enabled for the gateway's NATS account: add `jetstream: enabled` to that account (AGENTGW in accounts.conf) and reload the server"
	case jsNotEnabled:
		return jsHintNotEnabled
	case jsStreamNameInUse:
		return "a stream or bucket of that name already exists with settings the gateway cannot change into its own (made by hand or by another setup): compare it with `nats stream info NAME`, and remove it if it holds nothing you need"
	case jsStreamSubjectOverlap:
		return "another stream in the gateway's account already takes some agentgw.> subjects: the gateway owns agentgw.in, cap, approval, denied, audit, reply and journal; narrow or remove that stream (`nats stream ls`)"
	case jsStreamInvalidConfig:
		return fmt.Sprintf("the server refused the stream's settings; if the stream exists from an earlier setup, it cannot change storage type, retention or (without the offline procedure of docs/scale-out.md) consumer.partitions: compare it with `nats stream info NAME` and with %s", config)
	}
	return ""
}
