package catalog

import (
	"fmt"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/schemas"
)

// unrolledFilter is the recursive filter tree of TestRecursiveSchemaRefused
// with its recursion unrolled into acyclic definitions e0..e<depth>, each
// level a oneOf of four variants whose "args" hold the next level: the
// shape an operator writes when the catalog refuses the recursive one.
func unrolledFilter(depth int) string {
	var defs []string
	for i := range depth {
		var variants []string
		for _, op := range []string{"and", "or", "not", "xor"} {
			variants = append(variants, fmt.Sprintf(`{"type":"object","required":["op","args"],"properties":{"op":{"const":%q},"args":{"type":"array","items":{"$ref":"#/$defs/e%d"}}}}`, op, i+1))
		}
		defs = append(defs, fmt.Sprintf(`"e%d":{"oneOf":[%s]}`, i, strings.Join(variants, ",")))
	}
	defs = append(defs, fmt.Sprintf(`"e%d":{"type":"string"}`, depth))
	return `{"type":"object","additionalProperties":false,"required":["filter"],"properties":{"filter":{"$ref":"#/$defs/e0"}},"$defs":{` + strings.Join(defs, ",") + `}}`
}

// nestedFilter is a payload nested depth levels deep, each level the
// last variant, so that oneOf tries all four at every level.
func nestedFilter(depth int) string {
	s := `"x"`
	for range depth {
		s = `{"op":"xor","args":[` + s + `]}`
	}
	return `{"filter":` + s + `}`
}

// catalogWith is a catalog of one target whose key (payload_schema or
// response_schema) is schema.
func catalogWith(key, schema string) []byte {
	return []byte("targets:\n  - name: search.query\n    kind: read\n    scope: kb:read\n    tenants: [tenant_a]\n    plain: true\n" +
		"    consumer_xkey: " + xkey + "\n    response_deadline: 1m\n    " + key + ": '" + schema + "'\n")
}

// TestExpandingSchemaRefused: an acyclic schema whose references, followed,
// make it exponentially large (the four-variant union unrolled ten levels
// validated a 234-byte payload in 2.2 s) is refused at load, as a payload
// and as a response schema.
func TestExpandingSchemaRefused(t *testing.T) {
	for _, key := range []string{"payload_schema", "response_schema"} {
		for _, depth := range []int{7, 10} {
			_, err := Parse(catalogWith(key, unrolledFilter(depth)), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), "with its references followed") {
				t.Errorf("%s unrolled %d levels: Parse = %v; want it refused", key, depth, err)
			}
		}
	}
}

// anyOfFanout is an array of values each checked against eleven levels of
// anyOf, two references to the next level each: 2,048 ways to the last,
// 8,189 subschemas in all, under maxSchemaExpansion.
func anyOfFanout() string {
	var defs []string
	for i := range 11 {
		defs = append(defs, fmt.Sprintf(`"d%d":{"anyOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]}`, i, i+1, i+1))
	}
	defs = append(defs, `"d11":{"type":"string"}`)
	return `{"type":"object","properties":{"a":{"type":"array","items":{"$ref":"#/$defs/d0"}}},"$defs":{` + strings.Join(defs, ",") + `}}`
}

// TestFanoutSchemaRefused: schemas within maxSchemaExpansion whose
// applicators still check one value many times are refused, as payload
// and response schemas: the union unrolled five levels (1.3 s for a
// valid 12 KB payload) and eleven levels of anyOf (2.1 s for 407 bytes,
// 74 s for 8 KB). The union two levels deep loads and validates.
func TestFanoutSchemaRefused(t *testing.T) {
	for _, key := range []string{"payload_schema", "response_schema"} {
		for name, schema := range map[string]string{"union 3": unrolledFilter(3), "union 5": unrolledFilter(5), "anyOf": anyOfFanout()} {
			_, err := Parse(catalogWith(key, schema), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), key+": a value") || strings.Count(err.Error(), "_schema") != 1 {
				t.Errorf("%s %s: Parse = %v; want it refused, under %s alone", key, name, err, key)
			}
		}
	}
	c, err := Parse(catalogWith("payload_schema", unrolledFilter(2)), t.TempDir())
	if err != nil {
		t.Fatalf("unrolled 2 levels: Parse = %v; want it loaded", err)
	}
	tg, _ := c.Lookup("search.query")
	if _, err := tg.ValidatePayload([]byte(nestedFilter(2))); err != nil {
		t.Errorf("ValidatePayload(2 levels) = %v", err)
	}
}

// TestCommonSchemaShapesLoad: what tool schemas usually hold stays under
// the bounds: a union of 30 variants each a reference, optional fields
// written as anyOf with null, a definition shared by 30 properties, and
// an enum of 300 values.
func TestCommonSchemaShapesLoad(t *testing.T) {
	var variants, defs, props []string
	for i := range 30 {
		variants = append(variants, fmt.Sprintf(`{"$ref":"#/$defs/v%d"}`, i))
		defs = append(defs, fmt.Sprintf(`"v%d":{"type":"object","required":["kind"],"properties":{"kind":{"const":"k%d"},"n":{"type":"integer"}}}`, i, i))
	}
	for i := range 30 {
		props = append(props, fmt.Sprintf(`"f%d":{"anyOf":[{"$ref":"#/$defs/addr"},{"type":"null"}]}`, i))
	}
	var enum []string
	for i := range 300 {
		enum = append(enum, fmt.Sprintf(`"c%d"`, i))
	}
	defs = append(defs, `"addr":{"type":"object","properties":{"street":{"type":"string"},"country":{"enum":[`+strings.Join(enum, ",")+`]}}}`)
	schema := `{"type":"object","properties":{"op":{"oneOf":[` + strings.Join(variants, ",") + `]},` + strings.Join(props, ",") + `},"$defs":{` + strings.Join(defs, ",") + `}}`
	c, err := Parse(catalogWith("payload_schema", schema), t.TempDir())
	if err != nil {
		t.Fatalf("Parse = %v; want it loaded", err)
	}
	tg, _ := c.Lookup("search.query")
	if _, err := tg.ValidatePayload([]byte(`{"op":{"kind":"k29","n":1},"f3":{"street":"x","country":"c299"},"f4":null}`)); err != nil {
		t.Errorf("ValidatePayload = %v", err)
	}
}

// TestCheckExpansionCountsEveryPath: a definition reached two ways counts
// twice, and the bound is exact.
func TestCheckExpansionCountsEveryPath(t *testing.T) {
	// root, two properties, each a $ref node to the same definition of
	// one subschema (the definition and its "id" property): 1 + 2×(1+1+1).
	s, err := compileSchema("payload_schema", "t", `{"type":"object","properties":{"from":{"$ref":"#/$defs/a"},"to":{"$ref":"#/$defs/a"}},"$defs":{"a":{"type":"object","properties":{"id":{"type":"string"}}}}}`, t.TempDir(), new([]schemaFile))
	if err != nil {
		t.Fatal(err)
	}
	const size = 7
	if err := checkExpansion(s, size); err != nil {
		t.Errorf("checkExpansion(%d) = %v; want nil", size, err)
	}
	if err := checkExpansion(s, size-1); err == nil {
		t.Errorf("checkExpansion(%d) = nil; want refused", size-1)
	}
}

// TestFanoutVisitsEachShapeOnce: objects nested twelve levels, each with
// three named properties and additionalProperties holding the next level,
// load after a visit per distinct set of subschemas, not one per way down
// (4^12: 12.5 s to load before).
func TestFanoutVisitsEachShapeOnce(t *testing.T) {
	s := `{"type":"string"}`
	for range 12 {
		s = `{"type":"object","properties":{"id":{"type":"string"},"name":{"type":"string"},"note":{"type":"string"}},"additionalProperties":` + s + `}`
	}
	sch, err := compileSchema("payload_schema", "t", s, t.TempDir(), new([]schemaFile))
	if err != nil {
		t.Fatalf("compileSchema = %v; want it loaded", err)
	}
	looks, err := fanout(sch, maxValueChecks)
	if err != nil || looks > 400 {
		t.Errorf("fanout looked at %d sets of subschemas (%v); want at most 400 and no error", looks, err)
	}
}

// TestLargeEnumsRefused: the validator compares a value with every enum
// value (numbers as big.Rat, about 1 µs each): one enum of 4,031 values,
// or allOf of 63 enums of 63 values, took 8–9 s for a 4 KiB payload of
// numbers, and is refused; an enum of 300 values loads
// (TestCommonSchemaShapesLoad).
func TestLargeEnumsRefused(t *testing.T) {
	vals := func(n int) string {
		var v []string
		for i := range n {
			v = append(v, fmt.Sprint(i))
		}
		return `{"enum":[` + strings.Join(v, ",") + `]}`
	}
	items := func(schema string) string {
		return `{"type":"object","properties":{"a":{"type":"array","items":` + schema + `}}}`
	}
	for name, schema := range map[string]string{
		"one enum of 4031": items(vals(4031)),
		"63 enums of 63":   items(`{"allOf":[` + strings.TrimSuffix(strings.Repeat(vals(63)+",", 63), ",") + `]}`),
	} {
		if _, err := Parse(catalogWith("payload_schema", schema), t.TempDir()); err == nil || !strings.Contains(err.Error(), "subschema checks") {
			t.Errorf("%s: Parse = %v; want it refused", name, err)
		}
	}
}

// TestFanoutWorkBounded: a schema built to tell apart some 8^5 sets of
// subschemas, each with a thousand properties below it, is refused after
// maxFanoutLooks looks (it took 52 s to refuse when only distinct sets
// were counted).
func TestFanoutWorkBounded(t *testing.T) {
	wrap := func(d int, s string) string {
		for range d {
			s = `{"additionalProperties":` + s + `}`
		}
		return s
	}
	const n, k, wide = 8, 5, 1000
	var branches []string
	for d := range k {
		var props []string
		for i := range n {
			props = append(props, fmt.Sprintf(`"t%dn%d":%s`, d, i, wrap(k-d-1, `{"type":"object"}`)))
		}
		branches = append(branches, wrap(d, `{"properties":{`+strings.Join(props, ",")+`}}`))
	}
	var props []string
	for i := range wide {
		props = append(props, fmt.Sprintf(`"w%d":{}`, i))
	}
	branches = append(branches, wrap(k, `{"properties":{`+strings.Join(props, ",")+`}}`))
	sch, err := schemas.CompileBytes("catalog:///t.schema.json", []byte(`{"allOf":[`+strings.Join(branches, ",")+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	looks, err := fanout(sch, maxValueChecks)
	if err == nil || looks > maxFanoutLooks+1 {
		t.Errorf("fanout = %d looks, %v; want it refused within %d looks", looks, err, maxFanoutLooks)
	}
}

// TestStringEnumsLoad: strings compare at once, so an enum of 600 of
// them (the time zones) counts 10 checks and loads.
func TestStringEnumsLoad(t *testing.T) {
	var v []string
	for i := range 600 {
		v = append(v, fmt.Sprintf(`"Zone/%d"`, i))
	}
	schema := `{"type":"object","properties":{"tz":{"anyOf":[{"type":"null"},{"enum":[` + strings.Join(v, ",") + `]}]}}}`
	if _, err := Parse(catalogWith("payload_schema", schema), t.TempDir()); err != nil {
		t.Errorf("Parse = %v; want it loaded", err)
	}
}
