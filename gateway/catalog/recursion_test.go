package catalog

import (
	"fmt"
	"strings"
	"testing"
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

// TestExpandingSchemaRefused: an acyclic schema whose references, followed,
// make it exponentially large (the four-variant union unrolled ten levels
// validated a 234-byte payload in 2.2 s) is refused at load, as a payload
// and as a response schema; the same union three levels deep loads and
// validates a payload as deep.
func TestExpandingSchemaRefused(t *testing.T) {
	target := func(key, schema string) []byte {
		return []byte("targets:\n  - name: search.query\n    kind: read\n    scope: kb:read\n    tenants: [tenant_a]\n    plain: true\n" +
			"    consumer_xkey: " + xkey + "\n    response_deadline: 1m\n    " + key + ": '" + schema + "'\n")
	}
	for _, key := range []string{"payload_schema", "response_schema"} {
		for _, depth := range []int{7, 10} {
			_, err := Parse(target(key, unrolledFilter(depth)), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), "with its references followed") {
				t.Errorf("%s unrolled %d levels: Parse = %v; want it refused", key, depth, err)
			}
		}
	}
	c, err := Parse(target("payload_schema", unrolledFilter(3)), t.TempDir())
	if err != nil {
		t.Fatalf("unrolled 3 levels: Parse = %v; want it loaded", err)
	}
	tg, _ := c.Lookup("search.query")
	if _, err := tg.ValidatePayload([]byte(nestedFilter(3))); err != nil {
		t.Errorf("ValidatePayload(3 levels) = %v", err)
	}
}

// TestCheckExpansionCountsEveryPath: a definition reached two ways counts
// twice, and the bound is exact.
func TestCheckExpansionCountsEveryPath(t *testing.T) {
	// root, two properties, each a $ref node to the same definition of
	// one subschema (the definition and its "id" property): 1 + 2×(1+1+1).
	s, err := compileSchema("t", `{"type":"object","properties":{"from":{"$ref":"#/$defs/a"},"to":{"$ref":"#/$defs/a"}},"$defs":{"a":{"type":"object","properties":{"id":{"type":"string"}}}}}`, t.TempDir(), new([]schemaFile))
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
