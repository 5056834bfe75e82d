package catalog

import (
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A schema that refers back to itself ($ref to "#", or to a definition
// that refers to it again) validates a payload nested as deep as the
// payload goes, and under an applicator that tries several subschemas on
// the same value (oneOf, anyOf, allOf, if/then, not) each level tries
// them all again: a recursive tagged union of four variants took 2.4 s
// for a 231-byte payload eleven levels deep, and every level more
// multiplies it by four. The catalog refuses cycles, and $recursiveRef
// and $dynamicRef, which exist for them. A schema without a cycle has a
// fixed depth, but the same union unrolled into definitions, each level
// a oneOf whose variants refer to the next, still tries every variant
// of every level on one value: 2.2 s for a 234-byte payload ten levels
// deep. What a value can cost is bounded by the schema's size with its
// references followed (every subschema counted once per way the root
// reaches it): the catalog refuses a schema above maxSchemaExpansion,
// so validation costs at most that many subschema checks per part of
// the payload.

// checkAcyclic returns an error naming a subschema that s reaches again
// from itself, or the dynamic reference s holds.
func checkAcyclic(s *jsonschema.Schema) error {
	const (
		unseen = iota
		open
		done
	)
	state := map[*jsonschema.Schema]int{}
	var visit func(*jsonschema.Schema) error
	visit = func(n *jsonschema.Schema) error {
		switch state[n] {
		case open:
			return fmt.Errorf("schema %s refers back to itself: recursive schemas are refused, their validation can cost time exponential in a payload's nesting", n.Location)
		case done:
			return nil
		}
		state[n] = open
		if n.RecursiveRef != nil || n.DynamicRef != nil {
			return fmt.Errorf("schema %s uses $recursiveRef or $dynamicRef: recursive schemas are refused, their validation can cost time exponential in a payload's nesting", n.Location)
		}
		for _, c := range subschemas(n) {
			if err := visit(c); err != nil {
				return err
			}
		}
		state[n] = done
		return nil
	}
	return visit(s)
}

// maxSchemaExpansion bounds a payload or response schema's size with its
// references followed. A schema written out in full would have to be
// hundreds of kilobytes to reach it; the unrolled four-variant union
// reaches it at its sixth level (some 27,000 subschemas, 11 ms for a
// 146-byte payload).
const maxSchemaExpansion = 10000

// checkExpansion returns an error when s, with its references followed,
// holds more than max subschemas. s must be acyclic (checkAcyclic).
func checkExpansion(s *jsonschema.Schema, max int) error {
	size := map[*jsonschema.Schema]int{}
	var count func(*jsonschema.Schema) int
	count = func(n *jsonschema.Schema) int {
		if c, ok := size[n]; ok {
			return c
		}
		c := 1
		for _, sub := range subschemas(n) {
			c += count(sub)
			if c > max {
				c = max + 1 // saturate: the answer is already known
				break
			}
		}
		size[n] = c
		return c
	}
	if count(s) > max {
		return fmt.Errorf("schema %s holds more than %d subschemas with its references followed: refused, its validation can cost that many checks for each part of a payload", s.Location, max)
	}
	return nil
}

// subschemas lists every schema n applies to a value or to a part of it.
func subschemas(n *jsonschema.Schema) []*jsonschema.Schema {
	var out []*jsonschema.Schema
	add := func(ss ...*jsonschema.Schema) {
		for _, s := range ss {
			if s != nil {
				out = append(out, s)
			}
		}
	}
	addAny := func(v any) {
		switch v := v.(type) {
		case *jsonschema.Schema:
			add(v)
		case []*jsonschema.Schema:
			add(v...)
		}
	}
	add(n.Ref, n.Not, n.If, n.Then, n.Else, n.PropertyNames, n.UnevaluatedProperties,
		n.Contains, n.Items2020, n.UnevaluatedItems, n.ContentSchema)
	add(n.AllOf...)
	add(n.AnyOf...)
	add(n.OneOf...)
	add(n.PrefixItems...)
	for _, s := range n.Properties {
		add(s)
	}
	for _, s := range n.PatternProperties {
		add(s)
	}
	for _, s := range n.DependentSchemas {
		add(s)
	}
	for _, v := range n.Dependencies {
		addAny(v)
	}
	addAny(n.AdditionalProperties)
	addAny(n.Items)
	addAny(n.AdditionalItems)
	return out
}
