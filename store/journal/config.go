package journal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream is the journal's JetStream stream; partition p's records are on
// subject SubjectPrefix + p.
const (
	Stream        = "AGENTGW_JOURNAL"
	SubjectPrefix = "agentgw.journal."
	// MaxPartitions matches subjects.MaxPartitions.
	MaxPartitions = 1024
)

// Subject is partition p's journal subject. It panics unless
// 0 <= p < MaxPartitions.
func Subject(p int) string {
	if p < 0 || p >= MaxPartitions {
		panic("journal: partition " + strconv.Itoa(p) + " outside [0, " + strconv.Itoa(MaxPartitions) + ")")
	}
	return SubjectPrefix + strconv.Itoa(p)
}

// Errors returned by the package, matched with errors.Is.
var (
	// ErrInvalid: a record cannot be journaled (a missing or foreign
	// field, too large, or it must outlive the journal's MaxAge).
	ErrInvalid = errors.New("journal: invalid record")
	// ErrFenced: a writer with a newer epoch has claimed the partition.
	// This writer must stop: its lease is gone, whatever it believes.
	ErrFenced = errors.New("journal: partition claimed by a newer owner")
	// ErrNotClaimed: the writer has no live claim on the partition: it
	// never claimed it, released it, or every message of the partition
	// (the claim included) aged out of the stream. Claim again, and only
	// while the lease is valid.
	ErrNotClaimed = errors.New("journal: partition not claimed by this writer")
	// ErrCorrupt: a journal message cannot be decoded.
	ErrCorrupt = errors.New("journal: corrupt message")
	// ErrVersion: a journal message has a format this build does not know
	// (written by a newer agentgw).
	ErrVersion = errors.New("journal: unknown format version")
	// ErrNATS: JetStream refused or did not answer. After a failed Append
	// some of its records may be in the journal: a later Append of the
	// same records is harmless (replaying a record twice gives the same
	// ledger).
	ErrNATS = errors.New("journal: nats")
)

// Config describes the journal stream and how records are packed. Every
// instance of a deployment uses the same values.
type Config struct {
	// MaxAge is how long the stream keeps a message. It must cover the
	// longest-lived record (replay and idempotency entries: max TTL +
	// skew; approval holds: the approval TTL; outstanding responses: the
	// longest response deadline + max TTL) plus a margin for clock skew
	// between gateways and servers. Append refuses a record that expires
	// later than MaxAge from now. Zero value: 30m. At least 1s.
	MaxAge time.Duration
	// Replicas of the stream: 1 in development, 3 in production. Zero
	// value: 1.
	Replicas int
	// MaxMessageBytes caps one journal message; Append packs records
	// into messages up to it. Zero value: the connection's max payload
	// less 8 KiB for headers. A record larger than the cap is refused.
	MaxMessageBytes int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{MaxAge: 30 * time.Minute, Replicas: 1} }

func (c Config) withDefaults() Config {
	if c.MaxAge == 0 {
		c.MaxAge = 30 * time.Minute
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

// Validate reports every problem of the configuration (after defaults)
// at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.MaxAge < time.Second {
		errs = append(errs, fmt.Errorf("journal: max age %s must be at least 1s", c.MaxAge))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("journal: replicas %d must be in [1, 5]", c.Replicas))
	}
	if c.MaxMessageBytes != 0 && c.MaxMessageBytes < 1024 {
		errs = append(errs, fmt.Errorf("journal: max message bytes %d must be 0 or at least 1024", c.MaxMessageBytes))
	}
	return errors.Join(errs...)
}

// StreamConfig is the journal stream definition: limits retention by age,
// file storage, no direct gets (a claim must read the leader's view of the
// last message, not a replica's).
func StreamConfig(c Config) jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        Stream,
		Description: "agentgw: per-partition ledger journal for failover",
		Subjects:    []string{SubjectPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.MaxAge,
		Discard:     jetstream.DiscardOld,
		Duplicates:  min(2*time.Minute, c.MaxAge),
	}
}

// EnsureStream creates or updates the journal stream; it is idempotent.
func EnsureStream(ctx context.Context, js jetstream.JetStream, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, StreamConfig(c)); err != nil {
		return fmt.Errorf("journal: stream %s: %w: %v", Stream, ErrNATS, err)
	}
	return nil
}
