package client

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeRequest: DecodeRequest, which reads an approval request
// before its token is checked, never panics on any bytes; what it accepts
// belongs to the subject's tenant and target, and encodes to JSON that
// it reads back to the same request.
func FuzzDecodeRequest(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join(wireDir, "approval.json"))
	if err != nil {
		f.Fatal(err)
	}
	var file struct {
		Request wvMessage `json:"request"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		f.Fatal(err)
	}
	const tenant, target = "tenant_a", "payments.send"
	subject := file.Request.Subject
	if _, err := DecodeRequest(subject, []byte(file.Request.Body), tenant); err != nil {
		f.Fatalf("the vector's request does not decode: %v", err)
	}
	f.Add([]byte(file.Request.Body))
	f.Add([]byte(`{"tenant":"tenant_a","target":"payments.send","fields":{"a":[[[1e400]]]}}`))
	f.Add([]byte(`{"tenant":"tenant_a","Tenant":"tenant_b","target":"payments.send"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(subject, data, tenant)
		if err != nil {
			return
		}
		if req.Tenant != tenant || req.Target != target {
			t.Fatalf("DecodeRequest(%q) accepted tenant %q, target %q on %s", data, req.Tenant, req.Target, subject)
		}
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("encoding an accepted request: %v", err)
		}
		again, err := DecodeRequest(subject, enc, tenant)
		if err != nil {
			t.Fatalf("DecodeRequest of its own encoding %s: %v", enc, err)
		}
		if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the request: %s, then %s", enc, enc2)
		}
	})
}
