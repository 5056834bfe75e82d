package gateway

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/agentgw/agentgw/gateway/yamlerr"
)

// ConfigStage says how far a config got: its YAML did not decode, or
// the decoded settings are invalid.
type ConfigStage string

const (
	StageDecode   ConfigStage = "decode"
	StageValidate ConfigStage = "validate"
)

// ConfigError lists every problem of one stage of a config (unless
// Partial). A config that does not decode is not validated: its decode
// problems are listed, its validation problems not yet.
type ConfigError struct {
	Path     string // the file; "" for a Config built in code
	Stage    ConfigStage
	Problems []error
	// Partial: the YAML library stopped at its first problem (a syntax
	// error, or one behind an alias or merge key): there may be more.
	Partial bool
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("gateway: ")
	if e.Stage == StageDecode {
		b.WriteString("config does not decode")
	} else {
		b.WriteString("invalid config")
	}
	if e.Path != "" {
		b.WriteString(" " + e.Path)
	}
	fmt.Fprintf(&b, " (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, p := range e.Problems {
		b.WriteString("\n  - " + strings.ReplaceAll(p.Error(), "\n", "\n    "))
	}
	return b.String()
}

func (e *ConfigError) Unwrap() []error { return e.Problems }

// decodeStrict decodes data into cfg strictly (unknown fields are
// errors). goccy/go-yaml stops at the first problem, so the document is
// first walked against the Config type: every unknown field, and every
// value that does not decode into its field, is listed with its line,
// in a *ConfigError. What the walk cannot see (an alias, a merge key) is
// left to the strict decode that follows, whose first error is returned
// as a Partial list.
func decodeStrict(data []byte, cfg *Config) error {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return &ConfigError{Stage: StageDecode, Problems: []error{yamlerr.Clean(err)}, Partial: true}
	}
	if err := yamlerr.OneDocument(file); err != nil {
		return &ConfigError{Stage: StageDecode, Problems: []error{err}}
	}
	var problems []error
	for _, doc := range file.Docs {
		if doc.Body != nil {
			problems = append(problems, checkNode(doc.Body, reflect.TypeOf(cfg).Elem(), "")...)
			problems = append(problems, yamlerr.Retexted(doc.Body, reflect.TypeOf(cfg).Elem(), "")...)
		}
	}
	if len(problems) > 0 {
		return &ConfigError{Stage: StageDecode, Problems: problems}
	}
	if err := yaml.UnmarshalWithOptions(data, cfg, yaml.Strict()); err != nil {
		return &ConfigError{Stage: StageDecode, Problems: []error{yamlerr.Clean(err)}, Partial: true}
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// checkNode lists the problems of decoding node into a value of type t
// at path (dotted).
func checkNode(node ast.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Type() == ast.NullType {
		return nil
	}
	leaf := func() []error {
		if err := yaml.NodeToValue(node, reflect.New(t).Interface(), yaml.Strict()); err != nil {
			return []error{problem(node, path, yamlerr.Message(err))}
		}
		return nil
	}
	mapping, isMap := node.(*ast.MappingNode)
	if mv, ok := node.(*ast.MappingValueNode); ok {
		mapping, isMap = &ast.MappingNode{Values: []*ast.MappingValueNode{mv}}, true
	}
	switch {
	case t == durationType:
		return leaf()
	case t.Kind() == reflect.Struct && isMap:
		fields := yamlerr.Fields(t)
		var out []error
		for _, mv := range mapping.Values {
			key := mv.Key.String()
			if key == "<<" {
				continue // a merge key: left to the decoder
			}
			ft, ok := fields[key]
			if !ok {
				out = append(out, problem(mv.Key, join(path, key), "unknown field"))
				continue
			}
			out = append(out, checkNode(mv.Value, ft, join(path, key))...)
		}
		return out
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && isMap:
		var out []error
		for _, mv := range mapping.Values {
			key := mv.Key.String()
			if key == "<<" {
				continue
			}
			out = append(out, checkNode(mv.Value, t.Elem(), join(path, key))...)
		}
		return out
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			return leaf()
		}
		var out []error
		for i, v := range seq.Values {
			out = append(out, checkNode(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	return leaf()
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// problem is one located problem: "line L, column C: path: what".
func problem(n ast.Node, path, what string) error {
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return fmt.Errorf("line %d, column %d: %s: %s", tk.Position.Line, tk.Position.Column, path, what)
	}
	return fmt.Errorf("%s: %s", path, what)
}

// ConfigHint says what an error of LoadConfig lists, for a command to print
// below it: "every problem" only when that is true.
func ConfigHint(err error) string {
	var ce *ConfigError
	switch {
	case !errors.As(err, &ce):
		return ""
	case ce.Partial:
		return "the YAML library reports the first problem it meets here; fix it and run again to see any other"
	case ce.Stage == StageDecode:
		return "every decoding problem is listed above; once the file decodes, its settings are checked as well"
	}
	return "every problem is listed above; fix them and run again"
}
