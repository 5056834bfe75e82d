package lease

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// DefaultBucket is the JetStream KV bucket that holds the leases and the
// member heartbeats.
const DefaultBucket = "AGENTGW_LEASES"

// MaxPartitions bounds Config.Partitions; it matches subjects.MaxPartitions.
const MaxPartitions = 1024

// Config describes one instance's view of the lease protocol. Every
// instance of a deployment must use the same Bucket, Partitions, TTL and
// Replicas; Instance differs per instance.
type Config struct {
	// Bucket is the KV bucket name. Zero value: DefaultBucket.
	Bucket string
	// Instance names this gateway instance: 1–64 of [A-Za-z0-9_-], unique
	// in the deployment. Required. Two live processes with one name are a
	// misconfiguration the protocol cannot detect (they look like one
	// member that holds the union of their leases).
	Instance string
	// Partitions is the ingress partition count, 1–MaxPartitions.
	// Required.
	Partitions int
	// TTL is the lease duration: the bucket's max age, so a key the
	// server has not seen written for TTL is gone and another instance
	// may Create it. Zero value: 15s. At least 1s (the server's
	// granularity for KV expiry markers).
	TTL time.Duration
	// Renew is how often a held lease is rewritten. Zero value: TTL/3.
	// At most (TTL-Margin)/2, so that at least two renewals are tried
	// before the local deadline.
	Renew time.Duration
	// Margin is how much earlier than the server's expiry the holder
	// gives a lease up: it calls onLose at (send time of the last
	// successful write) + TTL - Margin on its monotonic clock. It must
	// cover clock drift over TTL, the server clocks' disagreement, the
	// time onLose takes to stop the partition, and the longest process
	// stall you accept (see the package documentation). Zero value: TTL/5.
	Margin time.Duration
	// Replicas of the bucket's stream: 1 in development, 3 in
	// production. Zero value: 1.
	Replicas int
}

// DefaultConfig returns the defaults; Instance and Partitions are still
// required.
func DefaultConfig() Config {
	return Config{Bucket: DefaultBucket, TTL: 15 * time.Second, Replicas: 1}
}

func (c Config) withDefaults() Config {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.TTL == 0 {
		c.TTL = 15 * time.Second
	}
	if c.Renew == 0 {
		c.Renew = c.TTL / 3
	}
	if c.Margin == 0 {
		c.Margin = c.TTL / 5
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

var (
	instanceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	bucketRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Validate reports every problem of the configuration (after defaults)
// at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("lease: "+format, args...))
	}
	if !bucketRE.MatchString(c.Bucket) {
		add("bucket %q must be 1-64 of [A-Za-z0-9_-]", c.Bucket)
	}
	if !instanceRE.MatchString(c.Instance) {
		add("instance %q must be 1-64 of [A-Za-z0-9_-]", c.Instance)
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		add("partitions %d must be in [1, %d]", c.Partitions, MaxPartitions)
	}
	if c.TTL < time.Second {
		add("ttl %s must be at least 1s", c.TTL)
	}
	if c.Margin <= 0 || c.Margin >= c.TTL {
		add("margin %s must be in (0, ttl %s)", c.Margin, c.TTL)
	}
	if c.Renew <= 0 || 2*c.Renew > c.TTL-c.Margin {
		add("renew %s must be positive and at most (ttl - margin)/2 = %s", c.Renew, (c.TTL-c.Margin)/2)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		add("replicas %d must be in [1, 5]", c.Replicas)
	}
	return errors.Join(errs...)
}
