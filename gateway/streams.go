package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/subjects"
)

// Stream names. Subjects are in package subjects.
const (
	StreamIngress  = "AGENTGW_IN"
	StreamCap      = "AGENTGW_CAP"
	StreamApproval = "AGENTGW_APPROVAL"
	StreamDenied   = "AGENTGW_DENIED"
	StreamAudit    = "AGENTGW_AUDIT"
	StreamReply    = "AGENTGW_REPLY"
)

// StreamConfigs returns the stream definitions the gateway creates or
// updates at start. They are plain jetstream.StreamConfig values so an
// operator can diff them against the server.
func StreamConfigs(c StreamsConfig, partitions int) []jetstream.StreamConfig {
	src, dest := subjects.IngressTransform(partitions)
	ingress := jetstream.StreamConfig{
		Name:        StreamIngress,
		Description: "agentgw: signed agent envelopes awaiting a decision",
		Subjects:    []string{subjects.IngressStreamSubject},
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      src,
			Destination: dest,
		},
		Storage:    jetstream.FileStorage,
		Replicas:   c.Replicas,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     c.IngressMaxAge,
		Duplicates: c.DuplicateWindow,
		// An agent's envelope is at most max_body_bytes; headers carry
		// the credential and signature.
		MaxMsgSize: 1 << 20,
		Discard:    jetstream.DiscardOld,
	}
	if c.IngressMaxBytes > 0 {
		// Full: refuse the publish, never drop a stored message (it may
		// be undecided). With discard new, nats-server also leaves the
		// stored messages alone when the cap is set or lowered below
		// what the stream holds. (A per-subject cap would not: it trims
		// every subject to a new limit at once, whatever the discard
		// policy, so there is no cap per agent.)
		ingress.Discard = jetstream.DiscardNew
		ingress.MaxBytes = c.IngressMaxBytes
	}
	output := func(name, desc, subj string) jetstream.StreamConfig {
		sc := jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subj},
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.MaxAge,
			Duplicates:  c.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		}
		if c.MaxMsgsPerOutput > 0 {
			// Full means push back (the publish fails, the ingress
			// message is not acked and comes back later), never drop.
			sc.MaxMsgs = c.MaxMsgsPerOutput
			sc.Discard = jetstream.DiscardNew
		}
		return sc
	}
	// Operators read denied and audit with direct gets
	// (client.ReadRecords): reads that need no consumer, so operators get
	// no consumer API (docs/security.md, "Confused deputies").
	deniedOut := output(StreamDenied, "agentgw: denied messages with their decision record", subjects.DeniedStreamSubject)
	deniedOut.AllowDirect = true
	auditOut := output(StreamAudit, "agentgw: audit events, one JSON object per line, a message per batch and tenant", subjects.AuditStreamSubject)
	auditOut.AllowDirect = true
	return []jetstream.StreamConfig{
		ingress,
		output(StreamCap, "agentgw: authorized requests, re-sealed to their consumer", subjects.CapabilityStreamSubject),
		output(StreamApproval, "agentgw: redacted requests awaiting an approver", subjects.ApprovalStreamSubject),
		deniedOut,
		auditOut,
		output(StreamReply, "agentgw: validated responses and decision notices to agents", subjects.ReplyStreamSubject),
	}
}

// EnsureStreams creates or updates every stream; it is idempotent.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c StreamsConfig, partitions int) error {
	for _, sc := range StreamConfigs(c, partitions) {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("gateway: stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// consumerConfig is the durable pull consumer for one partition.
func consumerConfig(c ConsumerConfig, partition int) jetstream.ConsumerConfig {
	name := c.Durable
	if c.Partitions > 1 {
		name = fmt.Sprintf("%s-p%d", c.Durable, partition)
	}
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "agentgw gateway decisions",
		FilterSubject: subjects.PartitionFilter(partition),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// Never give up on a message: every ingress message must end in
		// exactly one output. A poison message is denied, not dropped.
		MaxDeliver:        -1,
		MaxAckPending:     5 * c.Batch,
		MaxWaiting:        64,
		MaxRequestBatch:   c.Batch,
		MaxRequestExpires: maxRequestExpires,
	}
}

// maxRequestExpires is the longest pull an ingress consumer serves; the
// gateway's pulls last pullExpiry, which Validate keeps within it (a
// longer pull is refused by the server with a status nats.go waits
// through, and nothing would be consumed).
const maxRequestExpires = time.Minute

// pullExpiry is how long each of the gateway's ingress pulls lasts:
// five fetch waits, and at least the second jetstream requires.
func pullExpiry(fetchWait time.Duration) time.Duration {
	return max(fetchWait*5, time.Second)
}
