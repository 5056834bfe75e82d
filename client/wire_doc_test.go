package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestWireDocIsComplete keeps docs/wire.md in step with the code: every
// reason code with its stage and description, every header, and every
// vector file must be in it, so that a new code or header cannot reach
// the wire without reaching the spec other implementations are built
// from.
func TestWireDocIsComplete(t *testing.T) {
	raw, err := os.ReadFile("../docs/wire.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, info := range reason.All {
		row := "| `" + string(info.Code) + "` | " + string(info.Stage) + " | " + info.Description + " |"
		if !strings.Contains(doc, row+"\n") {
			t.Errorf("docs/wire.md has no reason row %q", row)
		}
	}
	for _, h := range []string{
		header.Credential, header.Signature, header.Traceparent, header.MsgID, header.Decision, header.Agent,
		header.SealedFrom, header.Reason, header.Stage, header.Detail, header.IngressSeq, header.IngressSubject,
		header.DecidedAt, header.Policy, header.PolicyVersion, header.MessageID, header.TraceID, header.Tenant,
		header.Target, header.Route, header.Replay, header.ReplayCredential, headerRequestID, headerResponder, notice.Header,
		header.CredentialSealed, header.CredentialSealedTo, header.BodyDigest, header.BodyBytes,
	} {
		if !strings.Contains(doc, "\n| `"+h+"` |") {
			t.Errorf("docs/wire.md's header table has no row for %s", h)
		}
	}
	files, err := filepath.Glob(filepath.Join(wireDir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vector files: %v", err)
	}
	for _, f := range files {
		if name := filepath.Base(f); !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("docs/wire.md does not describe testdata/wire/%s", name)
		}
	}
}
