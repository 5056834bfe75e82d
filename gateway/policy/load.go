package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/identity"
)

// ErrInvalid is wrapped by every Problem: a policy file that cannot be
// loaded as written.
var ErrInvalid = errors.New("policy: invalid policy")

// ErrNoFiles is returned by Load and Check when given no files.
var ErrNoFiles = errors.New("policy: no policy files")

// maxFileSize bounds one policy file, in bytes.
const maxFileSize = 4 << 20

// Problem is one reason a policy source cannot be loaded. It unwraps to
// ErrInvalid.
type Problem struct {
	File   string // base name of the file (the path for read errors)
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based; 0 when unknown
	Msg    string
}

// Error returns "policy: <file>:<line>:<col>: <msg>".
func (p *Problem) Error() string {
	if p.Line == 0 {
		return "policy: " + p.File + ": " + p.Msg
	}
	return fmt.Sprintf("policy: %s:%d:%d: %s", p.File, p.Line, p.Column, p.Msg)
}

// Unwrap returns ErrInvalid.
func (p *Problem) Unwrap() error { return ErrInvalid }

type source struct {
	name string // base name: the id prefix and the version input
	src  []byte
}

// Load reads and compiles the files into one Set. Every problem in every
// file is reported, joined (each a *Problem naming file, line and column);
// on any problem no Set is returned. Files are identified by base name,
// which must be unique.
func Load(files ...string) (*Set, error) {
	srcs, err := readFiles(files)
	if err != nil {
		return nil, err
	}
	return compile(srcs)
}

// Parse compiles a single in-memory source named name.
func Parse(name string, src []byte) (*Set, error) {
	return compile([]source{{name: filepath.Base(name), src: src}})
}

// Check parses and validates the files as Load would, returning all
// problems joined, or nil.
func Check(files ...string) error {
	_, err := Load(files...)
	return err
}

// Digest returns the Version the files would have if loaded, without
// compiling them.
func Digest(files ...string) (string, error) {
	srcs, err := readFiles(files)
	if err != nil {
		return "", err
	}
	return digest(srcs), nil
}

func readFiles(files []string) ([]source, error) {
	if len(files) == 0 {
		return nil, ErrNoFiles
	}
	var probs []error
	srcs := make([]source, 0, len(files))
	seen := make(map[string]string, len(files))
	for _, f := range files {
		name := filepath.Base(f)
		if prev, dup := seen[name]; dup {
			probs = append(probs, &Problem{File: identity.SafePath(f), Msg: "same base name as " + identity.SafePath(prev) + "; policy ids and versions are keyed by base name"})
			continue
		}
		seen[name] = f
		b, err := readFile(f)
		if err != nil {
			// A seed pasted where its file's path belongs is named by
			// SafePath, here and in the error's own copy of the path.
			probs = append(probs, &Problem{File: identity.SafePath(f), Msg: identity.SafePath(err.Error())})
			continue
		}
		srcs = append(srcs, source{name: name, src: b})
	}
	if len(probs) > 0 {
		return nil, errors.Join(probs...)
	}
	return srcs, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return b, nil
}

// digest is the canonical version of a set of sources: sorted by name,
// each as name NUL len NUL bytes.
func digest(srcs []source) string {
	sorted := slices.Clone(srcs)
	slices.SortFunc(sorted, func(a, b source) int { return strings.Compare(a.name, b.name) })
	h := sha256.New()
	for _, s := range sorted {
		h.Write([]byte(s.name))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(len(s.src))))
		h.Write([]byte{0})
		h.Write(s.src)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func compile(srcs []source) (*Set, error) {
	srcs = slices.Clone(srcs)
	slices.SortFunc(srcs, func(a, b source) int { return strings.Compare(a.name, b.name) })
	set := &Set{version: digest(srcs), meta: map[cedar.PolicyID]policyMeta{}, stageBlind: true, memoOK: true}
	var probs []error
	where := map[cedar.PolicyID]cedar.Position{}
	for _, s := range srcs {
		list, err := cedar.NewPolicyListFromBytes(s.name, s.src)
		if err != nil {
			probs = append(probs, parseProblem(s.name, err))
			continue
		}
		if len(list) == 0 {
			// Empty, or comments only: most likely truncated, or written
			// in place and read half way, and its forbids would be gone.
			// A file with nothing to say is left out of the list.
			probs = append(probs, &Problem{File: s.name, Msg: "holds no policy"})
			continue
		}
		for i, p := range list {
			pos := p.Position()
			prob := func(format string, args ...any) {
				probs = append(probs, &Problem{File: s.name, Line: pos.Line, Column: pos.Column, Msg: fmt.Sprintf(format, args...)})
			}
			id := cedar.PolicyID(s.name + ":" + strconv.Itoa(i))
			ann := p.Annotations()
			if v, ok := ann["id"]; ok {
				id = cedar.PolicyID(v)
				if !validID(string(v)) || strings.HasPrefix(string(v), "builtin:") {
					prob("@id(%q) must be 1-%d of [A-Za-z0-9._:-], start with a letter or digit, and not start with builtin:", v, decision.MaxClaimID)
				}
			} else if !decision.ValidClaimID(string(id)) {
				// A decision token names the policies that decided: an id
				// it cannot carry would fail every decision it makes.
				prob("the policy's id %q, from its file name, is not 1-%d of [A-Za-z0-9._:-]: rename the file or give the policy an @id", id, decision.MaxClaimID)
			}
			if prev, dup := where[id]; dup {
				prob("duplicate policy id %q (first at %s:%d:%d)", id, prev.Filename, prev.Line, prev.Column)
			} else {
				where[id] = pos
			}
			approval := false
			if v, ok := ann["approval"]; ok {
				if v != "required" {
					prob(`@approval(%q): the only value is "required"`, v)
				}
				approval = true
				if p.Effect() == cedar.Forbid {
					prob("@approval on a forbid has no effect")
				} else if answersInScope((*xast.Policy)(p.AST()).Action) {
					prob("@approval on a permit whose action scope takes in approve or respond: an answer cannot be held for an approver; name the request actions (read, delegate, tool_call, workflow_command)")
				}
			}
			for _, msg := range lint((*xast.Policy)(p.AST())) {
				prob("%s", msg)
			}
			xp := (*xast.Policy)(p.AST())
			meta := policyMeta{forbid: p.Effect() == cedar.Forbid, approval: approval, readsBudget: readsBudget(xp), readsStage: !stageBlind(xp), readsPayload: readsPayload(xp)}
			set.stageBlind = set.stageBlind && !meta.readsStage
			set.memoOK = set.memoOK && memoizable(xp)
			set.entries = append(set.entries, entry{id: id, p: p})
			set.meta[id] = meta
			if meta.readsBudget || meta.readsStage {
				set.scoped = append(set.scoped, entry{id: id, p: scopeOnly(xp)})
			}
		}
	}
	if len(probs) > 0 {
		return nil, errors.Join(probs...)
	}
	return set, nil
}

// validID reports whether an @id is what a decision token can carry
// (decision.ValidClaimID), starting with a letter or digit.
func validID(s string) bool {
	return decision.ValidClaimID(s) && (s[0] >= 'A' && s[0] <= 'Z' || s[0] >= 'a' && s[0] <= 'z' || s[0] >= '0' && s[0] <= '9')
}

// cedarPos matches the position cedar-go's parser puts in its errors.
var cedarPos = regexp.MustCompile(`^(?:parser error: )?parse error at <input>:(\d+):(\d+) ?`)

// parseProblem is cedar-go's parse error as a Problem. Cedar quotes the
// token it stopped at, and a file that is not Cedar (an nkey seed file
// listed under policies by mistake) is one identifier token to it: the
// position is kept, the rest of its text passes through
// identity.SafeText, so no seed or token reaches a log or the terminal.
func parseProblem(name string, err error) *Problem {
	msg := err.Error()
	m := cedarPos.FindStringSubmatchIndex(msg)
	if m == nil {
		return &Problem{File: name, Msg: identity.SafeText(msg)}
	}
	line, _ := strconv.Atoi(msg[m[2]:m[3]])
	col, _ := strconv.Atoi(msg[m[4]:m[5]])
	return &Problem{File: name, Line: line, Column: col, Msg: "parse error: " + identity.SafeText(msg[m[1]:])}
}

// lint reports agentgw-specific mistakes Cedar accepts but that would make
// a policy silently never match, or match at the wrong stage.
func lint(p *xast.Policy) []string {
	var out []string
	out = append(out, scopeTypes("principal", p.Principal, entityAgent)...)
	out = append(out, scopeTypes("resource", p.Resource, entityTarget)...)
	out = append(out, actionScope(p.Action)...)

	readsPayload, guarded := false, false
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			switch n := n.(type) {
			case xast.NodeTypeAccess:
				if isContext(n.Arg) && n.Value == "payload" {
					readsPayload = true
				}
			case xast.NodeTypeHas:
				if isContext(n.Arg) && n.Value == "payload" {
					guarded = true
				}
			}
			return true
		})
	}
	if readsPayload && !guarded {
		out = append(out, "reads context.payload without a `context has payload` test: it would error at stage authorize (see the package doc for the idiom)")
	}
	return out
}

// stageBlindAttrs are the context attributes equal at both stages.
var stageBlindAttrs = map[string]bool{"time": true, "hour": true, "budget": true}

// stageBlind reports whether p decides the same at stage authorize and
// stage content: every use of context is a read (or has-test) of an
// attribute in stageBlindAttrs. Conservative: context used any other way
// (passed whole, compared, or read for stage or payload) is not blind.
func stageBlind(p *xast.Policy) bool {
	return contextUsesOnly(p, stageBlindAttrs)
}

func isContext(n xast.IsNode) bool {
	v, ok := n.(xast.NodeTypeVariable)
	return ok && v.Name == "context"
}

func scopeTypes(what string, n xast.IsScopeNode, want cedar.EntityType) []string {
	var got []cedar.EntityType
	switch n := n.(type) {
	case xast.ScopeTypeEq:
		got = append(got, n.Entity.Type)
	case xast.ScopeTypeIn:
		got = append(got, n.Entity.Type)
	case xast.ScopeTypeIs:
		got = append(got, n.Type)
	case xast.ScopeTypeIsIn:
		got = append(got, n.Type, n.Entity.Type)
	}
	var out []string
	for _, t := range got {
		if t != want {
			out = append(out, fmt.Sprintf("%s scope names entity type %s; agentgw's %s is always %s", what, t, what, want))
		}
	}
	return out
}

// answersInScope reports whether an action scope takes in approve or
// respond: every action, or one of them named.
func answersInScope(n xast.IsActionScopeNode) bool {
	if _, all := n.(xast.ScopeTypeAll); all {
		return true
	}
	return slices.ContainsFunc(scopeEntities(n), func(u cedar.EntityUID) bool {
		return u.Type == entityAction && (u.ID == "approve" || u.ID == "respond")
	})
}

// scopeEntities returns the entities an action scope names (none for
// every action).
func scopeEntities(n xast.IsActionScopeNode) []cedar.EntityUID {
	switch n := n.(type) {
	case xast.ScopeTypeEq:
		return []cedar.EntityUID{n.Entity}
	case xast.ScopeTypeIn:
		return []cedar.EntityUID{n.Entity}
	case xast.ScopeTypeInSet:
		return n.Entities
	}
	return nil
}

func actionScope(n xast.IsActionScopeNode) []string {
	var out []string
	for _, u := range scopeEntities(n) {
		if u.Type != entityAction || !slices.Contains(Capabilities, string(u.ID)) {
			out = append(out, fmt.Sprintf("action scope names %s; actions are Action::\"<capability>\" with capability one of %s", u, strings.Join(Capabilities, ", ")))
		}
	}
	return out
}
