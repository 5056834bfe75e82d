package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/subjects"
)

// Reload re-reads the catalog, the policies and the revocations and swaps
// each atomically. A broken file keeps the old version in service and is
// reported; the others still reload. A revocations file that parses but
// holds an entry that is neither a credential id nor an agent key is
// applied without that entry, which is reported. Reloaded revocations
// then deny the held requests whose credential they revoke (sweepHolds).
func (g *Gateway) Reload() error {
	var errs []error
	if cat, err := catalog.Load(g.cfg.Catalog); err != nil {
		errs = append(errs, err)
	} else {
		g.catalog.Store(cat)
	}
	if set, err := policy.Load(g.cfg.Policies...); err != nil {
		errs = append(errs, err)
	} else {
		g.policy.Swap(set)
	}
	if err := g.loadRevocations(); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	result := "ok"
	if err != nil {
		result = "error"
	}
	g.metrics.PolicyReloads.WithLabelValues(result).Inc()
	ev := g.log.Info()
	if err != nil {
		ev = g.log.Error().Err(err)
	}
	ev.Str("policy_version", g.policy.Current().Version()).Str("catalog", g.catalog.Load().Digest).Msg("reload")
	return err
}

func (g *Gateway) loadRevocations() error {
	jtis := append([]string(nil), g.cfg.Revocations.JTIs...)
	keys := append([]string(nil), g.cfg.Revocations.Keys...)
	if f := g.cfg.Revocations.File; f != "" {
		data, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("gateway: revocations: %w", err)
		}
		if err == nil {
			var r RevocationConfig
			if err := yaml.UnmarshalWithOptions(data, &r, yaml.Strict()); err != nil {
				return fmt.Errorf("gateway: revocations %s: %w", f, err)
			}
			jtis, keys = append(jtis, r.JTIs...), append(keys, r.Keys...)
		}
	}
	// An entry that is not a credential id or an agent key would match
	// nothing: the operator is told, and the well-formed entries beside it
	// apply all the same (a revocation is never held back by a typo).
	var bad []error
	jtis = slices.DeleteFunc(jtis, func(j string) bool {
		if decision.ValidClaimID(j) {
			return false
		}
		bad = append(bad, fmt.Errorf("jti %.72q is not a credential id ([A-Za-z0-9._:-]{1,128})", j))
		return true
	})
	keys = slices.DeleteFunc(keys, func(k string) bool {
		if subjects.ValidAgent(k) {
			return false
		}
		bad = append(bad, fmt.Errorf("key %.72q is not an agent public key (U…, 56 characters)", k))
		return true
	})
	g.revocations.Replace(jtis, keys)
	// A revocation also denies the held requests it affects, at once
	// (sweepHolds), rather than leaving them for an approver.
	g.requestSweep()
	if len(bad) > 0 {
		return fmt.Errorf("gateway: revocations: %w", errors.Join(bad...))
	}
	return nil
}

// watchLoop reloads when the catalog, a policy file or the revocation
// file changes (content digest, polled every ReloadInterval). Operators
// should replace files atomically (write, then rename).
func (g *Gateway) watchLoop(ctx context.Context) error {
	if g.cfg.ReloadInterval <= 0 {
		return nil
	}
	t := time.NewTicker(g.cfg.ReloadInterval)
	defer t.Stop()
	last := g.fingerprint()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fp := g.fingerprint()
		if fp == last {
			continue
		}
		last = fp
		_ = g.Reload() // logs what failed; the old versions stay in service
	}
}

// fingerprint digests the contents of every reloadable file; a missing
// file contributes its absence.
func (g *Gateway) fingerprint() [32]byte {
	h := sha256.New()
	files := append([]string{g.cfg.Catalog, g.cfg.Revocations.File}, g.cfg.Policies...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(data))
		if err == nil {
			h.Write(data)
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
