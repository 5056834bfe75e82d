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
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/gateway/yamlerr"
	"github.com/agentgw/agentgw/subjects"
)

// rules are the catalog and the policy set the gates decide with. Reload
// swaps them together, so no message is decided with one file's new
// version and another's old one: a batch takes one snapshot for all its
// messages.
type rules struct {
	cat *catalog.Catalog
	pol *policy.Set
}

// Reload re-reads the catalog, the policies and the revocations. The
// catalog and the policies are swapped together, and only if both load:
// a broken file keeps both old versions in service and is reported (a
// new target must not be served under the old policy, nor an old one
// under a new policy written without it). The revocations reload on
// their own, whatever the others do: a revocation is never held back by
// a broken policy file. A revocations file that parses but holds an
// entry that is neither a credential id nor an agent key is applied
// without that entry, which is reported; one that cannot be read (gone,
// say) keeps the revocations in force. Reloaded revocations then deny
// the held requests whose credential they revoke (sweepHolds). Reloads
// run one at a time.
func (g *Gateway) Reload() error {
	_, _, err := g.reload()
	return err
}

// reload is Reload, which also returns the rules in force after it and
// the error of the catalog and the policies alone (nil if they loaded).
func (g *Gateway) reload() (inForce *rules, rulesErr, err error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	rulesErr = g.loadRules()
	err = errors.Join(rulesErr, g.loadRevocations())
	g.reportReload(err, false)
	return g.rules.Load(), rulesErr, err
}

// loadRules loads the catalog and the policies and swaps them in
// together if both load; otherwise the rules in force stay. The caller
// holds reloadMu.
func (g *Gateway) loadRules() error {
	var errs []error
	cat, err := catalog.Load(g.cfg.Catalog)
	if err == nil {
		err = g.cfg.checkApprovalTTLs(cat)
	}
	if err != nil {
		errs = append(errs, err)
	}
	set, err := policy.Load(g.cfg.Policies...)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		g.rules.Store(&rules{cat: cat, pol: set})
	}
	return errors.Join(errs...)
}

// reportReload counts a reload by its result and logs it with the rules
// in force after it; retry marks a retry of the catalog and the policies
// alone (watchLoop).
func (g *Gateway) reportReload(err error, retry bool) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	g.metrics.PolicyReloads.WithLabelValues(result).Inc()
	ev := g.log.Info()
	if err != nil {
		// Each error already hides what it quotes; SafeText is the
		// catch-all for any that does not (a seed or a JWT pasted into
		// a file the reload reads).
		ev = g.log.Error().Str(zerolog.ErrorFieldName, identity.SafeText(err.Error()))
	}
	if retry {
		ev = ev.Bool("retry", true)
	}
	r := g.rules.Load()
	ev.Str("policy_version", r.pol.Version()).Str("catalog", r.cat.Digest).Msg("reload")
}

// checkApprovalTTLs refuses a catalog with a target that holds requests
// longer than the approval stream keeps them (streams.max_age): the
// stream would delete a request still held, and approvers could no
// longer see or answer it.
func (c Config) checkApprovalTTLs(cat *catalog.Catalog) error {
	if c.Streams.MaxAge <= 0 {
		return nil
	}
	for _, name := range cat.Names() {
		if t, _ := cat.Lookup(name); t != nil && t.ApprovalTTL > c.Streams.MaxAge {
			return fmt.Errorf("%w: target %s: approval_ttl %s is longer than streams.max_age %s, for which the approval stream keeps a held request",
				catalog.ErrInvalid, name, t.ApprovalTTL, c.Streams.MaxAge)
		}
	}
	return nil
}

// retryRules loads the catalog and the policies again after a failed
// reload left failed in force (watchLoop). It reports whether they are
// settled: loaded, or replaced meanwhile by another reload (a SIGHUP).
// A retry that fails with the error text last reported (*text) is not
// reported again; one that fails otherwise, or loads, is. The
// revocations are left alone: they reload when their file changes.
func (g *Gateway) retryRules(failed *rules, text *string) bool {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.rules.Load() != failed {
		return true
	}
	err := g.loadRules()
	if err == nil {
		g.reportReload(nil, true)
		return true
	}
	if err.Error() != *text {
		*text = err.Error()
		g.reportReload(err, true)
	}
	return false
}

func (g *Gateway) loadRevocations() error {
	jtis := append([]string(nil), g.cfg.Revocations.JTIs...)
	keys := append([]string(nil), g.cfg.Revocations.Keys...)
	principals := append([]string(nil), g.cfg.Revocations.Principals...)
	if f := g.cfg.Revocations.File; f != "" {
		r, err := readRevocations(f)
		if err != nil {
			return err
		}
		jtis, keys, principals = append(jtis, r.JTIs...), append(keys, r.Keys...), append(principals, r.Principals...)
	}
	// An entry that is not a credential id or an agent key would match
	// nothing: the operator is told, and the well-formed entries beside it
	// apply all the same (a revocation is never held back by a typo).
	// The entry is quoted by identity.SafeText: a seed or a JWT pasted
	// into the file is not logged.
	var bad []error
	jtis = slices.DeleteFunc(jtis, func(j string) bool {
		if identity.ValidRevokedJTI(j) {
			return false
		}
		bad = append(bad, fmt.Errorf("jti %.72q is not a credential id ([A-Za-z0-9._:-]{1,128}), alone or after its issuer's key and '/'", identity.SafeText(j)))
		return true
	})
	keys = slices.DeleteFunc(keys, func(k string) bool {
		if subjects.ValidAgent(k) {
			return false
		}
		bad = append(bad, fmt.Errorf("key %.72q is not an agent public key (U…, 56 characters)", identity.SafeText(k)))
		return true
	})
	principals = slices.DeleteFunc(principals, func(p string) bool {
		if identity.ValidPrincipal(p) {
			return false
		}
		bad = append(bad, fmt.Errorf("principal %.72q is not a principal (1-1024 bytes of UTF-8, no control characters)", identity.SafeText(p)))
		return true
	})
	g.revocations.Replace(jtis, keys)
	g.revocations.ReplacePrincipals(principals)
	// A revocation also denies the held requests it affects, at once
	// (sweepHolds), rather than leaving them for an approver.
	g.requestSweep()
	if len(bad) > 0 {
		return fmt.Errorf("gateway: revocations: %w", errors.Join(bad...))
	}
	return nil
}

// readRevocations reads a revocations file. A file that is missing,
// unreadable, not strict YAML of the shape, that names another file, or
// that does not name each of jtis, keys and principals (an empty file, or
// one truncated or written in place and read half way) is an error, and
// the caller keeps the revocations in force: a revocation is lifted only
// by a file that says so ("keys: []").
func readRevocations(path string) (RevocationConfig, error) {
	var r struct {
		JTIs       *[]string `yaml:"jtis"`
		Keys       *[]string `yaml:"keys"`
		Principals *[]string `yaml:"principals"`
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return RevocationConfig{}, fmt.Errorf("gateway: revocations: %w", err)
	}
	if err := yamlerr.Unmarshal(data, &r); err != nil {
		return RevocationConfig{}, fmt.Errorf("gateway: revocations %s: %w", identity.SafePath(path), err)
	}
	for _, sec := range []struct {
		name string
		vals *[]string
	}{{"jtis", r.JTIs}, {"keys", r.Keys}, {"principals", r.Principals}} {
		if sec.vals == nil {
			return RevocationConfig{}, fmt.Errorf("gateway: revocations %s: names no %s (a file names each of jtis, keys and principals, \"[]\" for none: one that lacks a section may have been read half way)",
				identity.SafePath(path), sec.name)
		}
	}
	return RevocationConfig{JTIs: *r.JTIs, Keys: *r.Keys, Principals: *r.Principals}, nil
}

// watchLoop reloads (Reload) when the catalog, a schema file it names, a
// policy file or the revocation file changes (content digest, polled
// every ReloadInterval). While the catalog and the policies of the last
// reload failed to load, it loads them again on every later tick, even
// if no file it digests changed: a catalog that names a schema file not
// written yet (or broken) cannot say which file to watch, so the schema
// file it names is not in the digest until the catalog loads. A retry
// leaves the revocations alone and reports a failure only when its text
// differs from the last one reported. Operators should replace files
// atomically (write, then rename).
func (g *Gateway) watchLoop(ctx context.Context) error {
	if g.cfg.ReloadInterval <= 0 {
		return nil
	}
	t := time.NewTicker(g.cfg.ReloadInterval)
	defer t.Stop()
	// What New loaded, not the files as they are now: a file changed
	// since New read it (while the gateway set up) is reloaded at the
	// first tick.
	last := g.loadedPrint
	var (
		failed *rules // the rules in force when their reload failed; nil: none failed
		text   string // the text of the failure last reported
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fp := g.fingerprint()
		if fp == last {
			if failed != nil && g.retryRules(failed, &text) {
				failed = nil
			}
			continue
		}
		last = fp
		// Reload logs what failed; the old versions stay in service.
		inForce, rulesErr, _ := g.reload()
		failed, text = nil, ""
		if rulesErr != nil {
			failed, text = inForce, rulesErr.Error()
		}
	}
}

// fingerprint digests what a reload reads: the catalog and the schema
// files the catalog in force names (catalog.DigestOf), the revocations
// and the policies. A missing file contributes its absence. A schema
// file named only by a catalog that failed to load is not among them
// (watchLoop retries that reload instead).
func (g *Gateway) fingerprint() [32]byte {
	return joinPrints(catalog.DigestOf(g.cfg.Catalog, g.rules.Load().cat.Files()), g.filesPrint())
}

// filesPrint digests the revocations file and the policy files.
func (g *Gateway) filesPrint() [32]byte {
	h := sha256.New()
	for _, f := range append([]string{g.cfg.Revocations.File}, g.cfg.Policies...) {
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

// joinPrints is a fingerprint of a catalog digest and a filesPrint.
func joinPrints(catalogDigest string, files [32]byte) [32]byte {
	return sha256.Sum256(append([]byte(catalogDigest+"\x00"), files[:]...))
}

// RevocationsLackOnlyPrincipals reports whether data is a revocations
// file that names jtis and keys, each a list, and has no principals key
// at all: the shape of a file from before revocations named principals,
// which gains "principals: []" to load. The writers here put principals
// first, so a file of theirs cut short lacks jtis or keys, never only
// principals; one with a principals key and no list after it was cut
// there.
func RevocationsLackOnlyPrincipals(data []byte) bool {
	var m map[string]any
	if yaml.Unmarshal(data, &m) != nil {
		return false
	}
	_, hasPrincipals := m["principals"]
	jtis, okJ := m["jtis"].([]any)
	keys, okK := m["keys"].([]any)
	return !hasPrincipals && okJ && okK && jtis != nil && keys != nil
}
