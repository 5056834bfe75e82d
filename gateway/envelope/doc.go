// Package envelope owns agentgw wire format v1 (docs/wire.md): the body an
// agent signs, its strict parser, its field rules, its freshness check,
// and the Ed25519 signature over "agentgw-envelope-v1\n" + exact body
// bytes.
//
// Parse is the only way in. It checks size before reading a byte, then
// reads the body once with its own strict JSON scanner: valid UTF-8 (no
// lone surrogate escapes), no control character in a member name at any
// depth (a decoder downstream may end a name at U+0000), no duplicate
// member names at any depth — names that differ only in case count as
// duplicates, because Go's encoding/json and other case-insensitive
// decoders downstream would merge them — no unknown members, bounded
// depth, string and number length. Deeply nested
// input is refused at MaxDepth+1 bytes of nesting, before anything recurses
// further. encoding/json is deliberately not used for the body.
//
// The body is unauthenticated when Parse reads it, so every check costs
// time linear in its size, whatever its shape: a member name is compared
// with at most 16 others (an object's first members, without allocating)
// or looked up in a set of case-folded names (FoldName), never with every
// name before it. BenchmarkParseWorstCase reports ns/byte from 1 KiB to
// 1 MiB; TestNameWorkLinear counts the comparisons.
//
// Signatures are made and checked over bytes, never over a re-serialised
// object: Sign and Verify take the body exactly as it travels.
//
// Package envelope refuses to know about NATS (subjects, headers, streams),
// credentials and trust (who may sign for whom), the ledger, the catalog
// and policy. It reports every rejection as a *reason.Denial.
package envelope
