package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// BaseURL is the $id prefix of the embedded schemas.
const BaseURL = "https://agentgw.dev/schemas/v1/"

// Names of the embedded schemas, for Compile.
const (
	Envelope   = "envelope.schema.json"
	Credential = "credential.schema.json"
	AuditEvent = "audit-event.schema.json"
	EvalCases  = "eval-cases.schema.json"
)

//go:embed *.schema.json
var files embed.FS

// ErrUnknownSchema is returned by Compile for a name that is not embedded.
var ErrUnknownSchema = errors.New("schemas: unknown schema")

// ErrNotStrictJSON is returned for a schema document with duplicate member
// names or invalid UTF-8, which a lenient decoder would silently resolve.
var ErrNotStrictJSON = errors.New("schemas: schema is not strict JSON")

// FS returns the embedded schema files.
func FS() fs.FS { return files }

// Compile compiles the embedded schema name (one of the names above). The
// result is safe for concurrent Validate calls; compile once and keep it.
func Compile(name string) (*jsonschema.Schema, error) {
	if _, err := fs.Stat(files, name); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSchema, name)
	}
	c, err := newCompiler()
	if err != nil {
		return nil, err
	}
	s, err := c.Compile(BaseURL + name)
	if err != nil {
		return nil, fmt.Errorf("schemas: compile %s: %w", name, err)
	}
	return s, nil
}

// CompileBytes compiles a schema supplied by configuration (a catalog
// payload or response schema) under url, which names it in errors and
// resolves its relative references. The document must be strict JSON (see
// ErrNotStrictJSON); it may refer to the embedded schemas by their BaseURL
// address but to nothing else outside itself.
func CompileBytes(url string, data []byte) (*jsonschema.Schema, error) {
	doc, err := decodeStrict(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if f, ok := unknownFormat(doc); ok {
		return nil, fmt.Errorf("schemas: %s: format %q is not one the validator checks (%s): it would accept any value", url, f, strings.Join(KnownFormats, ", "))
	}
	c, err := newCompiler()
	if err != nil {
		return nil, err
	}
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schemas: %s: %w", url, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schemas: compile %s: %w", url, err)
	}
	return s, nil
}

// Validate decodes doc (numbers kept exact) and validates it against s.
// Validation errors are *jsonschema.ValidationError.
func Validate(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("schemas: decode: %w", err)
	}
	return s.Validate(v)
}

func decodeStrict(data []byte) (any, error) {
	if !jsontext.Value(data).IsValid() {
		return nil, ErrNotStrictJSON
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(data))
}

// refuseLoader is the compiler's only loader: every URL that is neither
// added as a resource nor a standard metaschema is refused.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schemas: refusing to load %q: only embedded schemas may be referenced", url)
}

func newCompiler() (*jsonschema.Compiler, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refuseLoader{})
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("schemas: %w", err)
	}
	for _, e := range entries {
		data, err := fs.ReadFile(files, e.Name())
		if err != nil {
			return nil, fmt.Errorf("schemas: %w", err)
		}
		doc, err := decodeStrict(data)
		if err != nil {
			return nil, fmt.Errorf("embedded %s: %w", e.Name(), err)
		}
		if err := c.AddResource(BaseURL+e.Name(), doc); err != nil {
			return nil, fmt.Errorf("schemas: embedded %s: %w", e.Name(), err)
		}
	}
	return c, nil
}

// KnownFormats are the format names the validator asserts. A schema that
// names another would have it accepted unchecked (the JSON Schema rule for
// an unknown format), so a configured schema naming one is refused.
var KnownFormats = []string{
	"date", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "iri", "iri-reference",
	"json-pointer", "period", "relative-json-pointer", "semver", "time", "uri", "uri-reference",
	"uri-template", "uuid",
}

// unknownFormat finds a "format" keyword whose value is not in
// KnownFormats, in the schema positions of schema: not inside the values
// of const, enum, default or examples, which are data, and with the
// members of properties, patternProperties, $defs, definitions and
// dependentSchemas read as schemas whatever their names.
func unknownFormat(schema any) (string, bool) {
	switch v := schema.(type) {
	case map[string]any:
		for k, sub := range v {
			switch k {
			case "const", "enum", "default", "examples":
				continue
			case "format":
				if f, ok := sub.(string); ok && !slices.Contains(KnownFormats, f) {
					return f, true
				}
			case "properties", "patternProperties", "$defs", "definitions", "dependentSchemas":
				if named, ok := sub.(map[string]any); ok {
					for _, s := range named {
						if f, ok := unknownFormat(s); ok {
							return f, true
						}
					}
					continue
				}
			}
			if f, ok := unknownFormat(sub); ok {
				return f, true
			}
		}
	case []any:
		for _, sub := range v {
			if f, ok := unknownFormat(sub); ok {
				return f, true
			}
		}
	}
	return "", false
}
