package catalog

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
// deep. So the catalog also bounds, for every value a payload can hold
// (the payload itself, a property, an element, at any depth), how many
// subschema checks the validator can apply to that one value: those
// the applicators in place (allOf, anyOf, oneOf, not, if/then/else,
// $ref, dependentSchemas) reach from every subschema that takes the
// value in, each counted once per way the root reaches it, an enum's
// values counted too (checkFanout, at most maxValueChecks). Validation
// then costs at most that many checks per part of the payload: an
// array of 32,000 numbers (64 KiB) against an anyOf of 31 references,
// 63 checks each and every one failing, took 1.8 s, against 0.1 s for
// one check each; an unrolled union five levels deep took 1.3 s for a
// valid 12 KB, and an anyOf of two references per level, eleven levels,
// 74 s for 8 KB, before this bound. The
// schema's size with its references followed is bounded too
// (checkExpansion, at most maxSchemaExpansion), which bounds the cost
// of these checks.

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

// maxValueChecks bounds the subschema checks one value can meet
// (checkFanout). A property typed through a $ref to a definition costs
// 2; a oneOf of 31 variants, each a $ref, 63.
const maxValueChecks = 64

// How many of an enum's values count as one check. The validator
// compares a value with each value of its type in turn: numbers as
// big.Rat, about 1 µs each (an enum of 4,031 numbers took 9 s for a
// 4 KiB payload), objects and arrays member by member, strings, booleans
// and null at once. An enum of 300 numbers counts 38 checks, of 600
// strings (the time zones) 10.
const (
	enumPerCheck       = 8
	enumStringPerCheck = 64
)

// checkFanout returns an error when some value of a payload would meet
// more than max subschema checks against s (an acyclic schema whose
// expansion checkExpansion bounded). It follows the payload's shape:
// the subschemas that take in a value are those of its parent's
// subschemas that name its key or index, with those that take in any
// key or element; each brings in what it applies in place.
func checkFanout(s *jsonschema.Schema, max int) error {
	_, err := fanout(s, max)
	return err
}

// maxFanoutLooks bounds the work of checkFanout: the times it looks at a
// set of subschemas, a set seen before included. Past it the schema is
// refused: a 13 KB schema built to tell apart some 8^5 shapes of value,
// each with a thousand properties below, took 52 s before this bound.
const maxFanoutLooks = 200000

// fanout is checkFanout, with the number of times it looked at a set of
// subschemas, a set seen before included. A value's set of subschemas
// decides what lies below it, so a set seen before is not visited
// again: without that, an object nested twelve levels, each with three
// named properties and additionalProperties holding the next, took
// 12.5 s to load (four ways down at every level).
func fanout(s *jsonschema.Schema, max int) (int, error) {
	seen, looks := map[string]bool{}, 0
	var visit func(in map[*jsonschema.Schema]int, depth int) error
	visit = func(in map[*jsonschema.Schema]int, depth int) error {
		looks++
		if looks > maxFanoutLooks {
			return fmt.Errorf("the schema tells apart too many shapes of value (more than %d looks): refused, the cost of its validation could not be bounded", maxFanoutLooks)
		}
		key := setKey(in)
		if seen[key] {
			return nil
		}
		seen[key] = true
		here := map[*jsonschema.Schema]int{}
		checks := 0
		var expand func(n *jsonschema.Schema, k int)
		expand = func(n *jsonschema.Schema, k int) {
			if checks > max {
				return
			}
			here[n] += k
			checks += k * weight(n)
			for _, c := range inPlace(n) {
				expand(c, k)
			}
		}
		for n, k := range in {
			expand(n, k)
		}
		if checks > max {
			return fmt.Errorf("a value %d levels deep in a payload meets more than %d subschema checks: the schema is refused, its validation can cost that many checks for each part of a payload", depth, max)
		}
		// The values below: by name or index, with what takes in any.
		named := map[slot]map[*jsonschema.Schema]int{}
		anyName, anyIndex, keys := map[*jsonschema.Schema]int{}, map[*jsonschema.Schema]int{}, map[*jsonschema.Schema]int{}
		add := func(to map[*jsonschema.Schema]int, c *jsonschema.Schema, k int) {
			to[c] = min(to[c]+k, max+1)
		}
		for n, k := range here {
			below(n, func(at slot, c *jsonschema.Schema) {
				switch at.at {
				case atAnyName:
					add(anyName, c, k)
				case atAnyIndex:
					add(anyIndex, c, k)
				case atKeys:
					add(keys, c, k)
				default:
					if named[at] == nil {
						named[at] = map[*jsonschema.Schema]int{}
					}
					add(named[at], c, k)
				}
			})
		}
		next := []map[*jsonschema.Schema]int{anyName, anyIndex, keys}
		for at, m := range named {
			with := anyName
			if at.at == atIndex {
				with = anyIndex
			}
			for c, k := range with {
				add(m, c, k)
			}
			next = append(next, m)
		}
		for _, m := range next {
			if len(m) > 0 {
				if err := visit(m, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := visit(map[*jsonschema.Schema]int{s: 1}, 0)
	return looks, err
}

// setKey identifies a set of subschemas with their multiplicities.
func setKey(in map[*jsonschema.Schema]int) string {
	parts := make([]string, 0, len(in))
	for n, k := range in {
		parts = append(parts, fmt.Sprintf("%p*%d", n, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// weight is what checking a value against n alone costs, in checks.
func weight(n *jsonschema.Schema) int {
	w := 1
	if n.Enum != nil {
		costly := 0
		for _, v := range n.Enum.Values {
			switch v.(type) {
			case string, bool, nil:
			default:
				costly++
			}
		}
		w += costly/enumPerCheck + (len(n.Enum.Values)-costly)/enumStringPerCheck
	}
	return w
}

// inPlace lists the subschemas n applies to the same value it checks.
func inPlace(n *jsonschema.Schema) []*jsonschema.Schema {
	var out []*jsonschema.Schema
	for _, c := range []*jsonschema.Schema{n.Ref, n.Not, n.If, n.Then, n.Else} {
		if c != nil {
			out = append(out, c)
		}
	}
	out = append(out, n.AllOf...)
	out = append(out, n.AnyOf...)
	out = append(out, n.OneOf...)
	for _, c := range n.DependentSchemas {
		out = append(out, c)
	}
	for _, v := range n.Dependencies {
		if c, ok := v.(*jsonschema.Schema); ok {
			out = append(out, c)
		}
	}
	return out
}

// Where a subschema applies below the value its parent checks.
const (
	atName     = 'p' // the property of the slot's name
	atIndex    = 'i' // the element of the slot's index
	atAnyName  = 'P' // any property
	atAnyIndex = 'I' // any element
	atKeys     = 'k' // the property names, and the content of a string
)

// slot is where below places a subschema: a kind (at*) and, for atName
// and atIndex, the name or index.
type slot struct {
	at  byte
	key string
}

// below calls f with every subschema n applies to a part of its value,
// and where.
func below(n *jsonschema.Schema, f func(slot, *jsonschema.Schema)) {
	call := func(at slot, c *jsonschema.Schema) {
		if c != nil {
			f(at, c)
		}
	}
	for name, c := range n.Properties {
		call(slot{atName, name}, c)
	}
	for _, c := range n.PatternProperties {
		call(slot{at: atAnyName}, c)
	}
	if c, ok := n.AdditionalProperties.(*jsonschema.Schema); ok {
		call(slot{at: atAnyName}, c)
	}
	call(slot{at: atAnyName}, n.UnevaluatedProperties)
	call(slot{at: atKeys}, n.PropertyNames)
	call(slot{at: atKeys}, n.ContentSchema)
	for i, c := range n.PrefixItems {
		call(slot{atIndex, strconv.Itoa(i)}, c)
	}
	switch it := n.Items.(type) {
	case *jsonschema.Schema:
		call(slot{at: atAnyIndex}, it)
	case []*jsonschema.Schema:
		for i, c := range it {
			call(slot{atIndex, strconv.Itoa(i)}, c)
		}
	}
	if c, ok := n.AdditionalItems.(*jsonschema.Schema); ok {
		call(slot{at: atAnyIndex}, c)
	}
	call(slot{at: atAnyIndex}, n.Items2020)
	call(slot{at: atAnyIndex}, n.Contains)
	call(slot{at: atAnyIndex}, n.UnevaluatedItems)
}

// subschemas lists every schema n applies to a value or to a part of it.
func subschemas(n *jsonschema.Schema) []*jsonschema.Schema {
	out := inPlace(n)
	below(n, func(_ slot, c *jsonschema.Schema) { out = append(out, c) })
	return out
}
