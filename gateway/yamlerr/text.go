package yamlerr

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Unmarshal decodes data into v strictly (unknown fields are errors),
// refusing first every value Retexted finds. Its errors are Clean.
func Unmarshal(data []byte, v any) error {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return Clean(err)
	}
	if err := OneDocument(file); err != nil {
		return err
	}
	t := reflect.TypeOf(v)
	for _, doc := range file.Docs {
		if doc.Body == nil {
			continue
		}
		if errs := Retexted(doc.Body, t, ""); len(errs) > 0 {
			return errs[0]
		}
	}
	if err := yaml.UnmarshalWithOptions(data, v, yaml.Strict()); err != nil {
		return Clean(err)
	}
	return nil
}

// OneDocument refuses a file of more than one YAML document (a "---"
// between two): the decoder reads only the first, and what the others
// say (a revocation, a limit) would be dropped without a word. The
// error names the line of the second document.
func OneDocument(file *ast.File) error {
	seen := 0
	for _, doc := range file.Docs {
		if doc.Body == nil {
			continue
		}
		if seen++; seen == 2 {
			line := 0
			if tk := doc.Body.GetToken(); tk != nil && tk.Position != nil {
				line = tk.Position.Line
			}
			return fmt.Errorf("line %d: a second YAML document (after \"---\"); a file holds one, and only the first would be read", line)
		}
	}
	return nil
}

// Retexted lists the values of node, decoded into a value of type t at
// path (dotted), that would become other text than the file holds: a
// key or value where t holds text (a string) that YAML reads as a number
// whose canonical form differs from how it is written (0042 read as 34,
// 0x10 as 16, 1_000 as 1000, 1.0 as 1), and a null where an element or
// a map's value is text (read as ""). A tenant, scope, subject or jti
// written so would silently name another one. Values that read as the
// text they are written as (12, true, 1e3) are left alone. The errors
// name the place, never the value.
func Retexted(node ast.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node == nil {
		return nil
	}
	mapping, isMap := node.(*ast.MappingNode)
	if mv, ok := node.(*ast.MappingValueNode); ok {
		mapping, isMap = &ast.MappingNode{Values: []*ast.MappingValueNode{mv}}, true
	}
	var out []error
	switch {
	case t.Kind() == reflect.String:
		if changes(node, false) {
			out = append(out, retexted(node, path))
		}
	case t.Kind() == reflect.Struct && isMap:
		fields := Fields(t)
		for _, mv := range mapping.Values {
			key := mv.Key.String()
			if ft, ok := fields[key]; ok {
				out = append(out, Retexted(mv.Value, ft, join(path, key))...)
			}
		}
	case t.Kind() == reflect.Map && isMap:
		for _, mv := range mapping.Values {
			key := mv.Key.String()
			if key == "<<" {
				continue // a merge key: left to the decoder
			}
			if t.Key().Kind() == reflect.String && changes(mv.Key, true) {
				out = append(out, retexted(mv.Key, join(path, "(a key)")))
			}
			if elem := deref(t.Elem()); elem.Kind() == reflect.String && changes(mv.Value, true) {
				out = append(out, retexted(mv.Value, join(path, key)))
			} else {
				out = append(out, Retexted(mv.Value, t.Elem(), join(path, key))...)
			}
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			break
		}
		for i, v := range seq.Values {
			p := fmt.Sprintf("%s[%d]", path, i)
			if elem := deref(t.Elem()); elem.Kind() == reflect.String && changes(v, true) {
				out = append(out, retexted(v, p))
			} else {
				out = append(out, Retexted(v, t.Elem(), p)...)
			}
		}
	}
	return out
}

// changes reports whether node, decoded as text, is other text than the
// file holds; with element, a null (read as "") counts.
func changes(node ast.Node, element bool) bool {
	switch node.Type() {
	case ast.NullType:
		return element
	case ast.IntegerType, ast.FloatType, ast.BoolType, ast.InfinityType, ast.NanType:
		var s string
		tk := node.GetToken()
		return tk == nil || yaml.NodeToValue(node, &s) != nil || s != tk.Value
	}
	return false
}

func retexted(node ast.Node, path string) error {
	e := &Error{Msg: path + ": YAML reads this value as a number or null, not as the text written: quote it"}
	if tk := node.GetToken(); tk != nil && tk.Position != nil {
		e.Line, e.Column = tk.Position.Line, tk.Position.Column
	}
	return e
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// Fields maps the YAML names of struct type t's fields to their types,
// following inline fields.
func Fields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") || (f.Anonymous && name == "") {
			if ft := deref(f.Type); ft.Kind() == reflect.Struct {
				for k, v := range Fields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
