package yamlerr

import (
	"strings"
	"testing"
)

type doc struct {
	Name    string            `yaml:"name"`
	List    []string          `yaml:"list"`
	Map     map[string]string `yaml:"map"`
	Nested  []inner           `yaml:"nested"`
	Count   int               `yaml:"count"`
	Pointer *string           `yaml:"pointer"`
}

type inner struct {
	Equals string `yaml:"equals"`
}

// TestRetextedRefusesRespelledText: a value where text belongs that YAML
// reads as a number written otherwise than its canonical form, or a null
// element, is refused with its place and without its text; a value that
// reads as the text it is written as, or is quoted, is decoded as written.
func TestRetextedRefusesRespelledText(t *testing.T) {
	for _, y := range []string{
		"name: 0042", "name: 0x10", "name: 0o17", "name: 1_000", "name: +12", "name: 1.0", "name: 1.50",
		"name: -0", "name: .inf", "name: .NaN", "pointer: 0042",
		"list: [a, 0042]", "list: [a, ~]", "list: [a, null]",
		"map: {0042: a}", "map: {a: 0100}", "map: {a: ~}",
		"nested: [{equals: 0100}]",
	} {
		var d doc
		err := Unmarshal([]byte(y), &d)
		if err == nil {
			t.Errorf("%s: decoded as %+v; want refused", y, d)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "line 1, column") || !strings.Contains(msg, "quote it") {
			t.Errorf("%s: %q; want its place and what to do", y, msg)
		}
		for _, v := range []string{"0042", "34", "0100", "64", "1000", "1_000", "Inf", "NaN"} {
			if strings.Contains(msg, v) {
				t.Errorf("%s: %q names the value", y, msg)
			}
		}
	}
	for y, want := range map[string]doc{
		"name: 12":              {Name: "12"},
		"name: true":            {Name: "true"},
		"name: 1e3":             {Name: "1e3"},
		`name: "0042"`:          {Name: "0042"},
		"name: '0042'":          {Name: "0042"},
		"name: ~":               {},
		"count: 0x10":           {Count: 16},
		"list: ['0042', 7]":     {List: []string{"0042", "7"}},
		`map: {"0042": "0100"}`: {Map: map[string]string{"0042": "0100"}},
	} {
		var d doc
		if err := Unmarshal([]byte(y), &d); err != nil {
			t.Errorf("%s: %v; want decoded", y, err)
			continue
		}
		if d.Name != want.Name || d.Count != want.Count || strings.Join(d.List, ",") != strings.Join(want.List, ",") || len(d.Map) != len(want.Map) || d.Map["0042"] != want.Map["0042"] {
			t.Errorf("%s: decoded %+v; want %+v", y, d, want)
		}
	}
}

// TestUnmarshalRefusesSecondDocument: a file of two YAML documents is
// refused, naming the line of the second: the decoder reads only the
// first, and a revocation or a rule in the second would be dropped
// without a word. Empty documents around one are not a second.
func TestUnmarshalRefusesSecondDocument(t *testing.T) {
	var v doc
	err := Unmarshal([]byte("name: a\n---\nlist: [revoked]\n"), &v)
	if err == nil || !strings.Contains(err.Error(), "line 3: a second YAML document") {
		t.Errorf("two documents: %v; want the second refused at line 3", err)
	}
	if err := Unmarshal([]byte("---\nname: a\n---\n"), &v); err != nil || v.Name != "a" {
		t.Errorf("one document between markers: %v (%+v)", err, v)
	}
}
