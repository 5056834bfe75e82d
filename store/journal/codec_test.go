package journal

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleRecords() []Record {
	exp := time.Unix(0, 1_900_000_000_123_456_789).UTC()
	return []Record{
		{Op: OpReplay, Tenant: "t", Agent: "UA", ID: "m1", Seq: 42, Expires: exp, Digest: digest(1), Decision: decision(1)},
		{Op: OpReplay, Tenant: "t", Agent: "UA", ID: "m2", Seq: 1, Expires: exp, Decision: Decision{Route: "deny", Reason: "replay_detected"}},
		{Op: OpIdem, Tenant: "t", Agent: "UA", ID: "k1", Digest: digest(2), FirstMessageID: "m1", Expires: exp, Decision: decision(2)},
		{Op: OpMarker, MarkerKind: "answered", ID: "resp:t/m1", Expires: exp},
		{Op: OpHold, ID: "t/m3", Expires: exp, Value: []byte(`{"deadline":"x"}`)},
		{Op: OpHold, ID: "t/m4", Expires: exp},
		{Op: OpHoldDelete, ID: "t/m3"},
		{Op: OpOutcome, Seq: 42, Value: []byte{0, 1, 2, 255}},
	}
}

func encodeAll(recs []Record) []byte {
	b := []byte{formatV1}
	for _, r := range recs {
		b = appendRecord(b, encodeRecord(r, r.Seq)) // a decoded fence has its epoch in Seq
	}
	return b
}

func decodeAll(b []byte) ([]Record, error) {
	var out []Record
	err := decodeMessage(b, func(r Record) error { out = append(out, r); return nil })
	return out, err
}

func TestCodecRoundTrip(t *testing.T) {
	recs := sampleRecords()
	for _, r := range recs {
		if err := r.Validate(); err != nil {
			t.Fatalf("Validate(%s) = %v", r.Op, err)
		}
	}
	got, err := decodeAll(encodeAll(recs))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, recs) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, recs)
	}
}

func TestValidate(t *testing.T) {
	exp := at(time.Minute)
	for _, tc := range []struct {
		name string
		r    Record
	}{
		{"replay/no-seq", Record{Op: OpReplay, Tenant: "t", Agent: "a", ID: "m", Expires: exp}},
		{"replay/no-expiry", Record{Op: OpReplay, Tenant: "t", Agent: "a", ID: "m", Seq: 1}},
		{"replay/no-tenant", Record{Op: OpReplay, Agent: "a", ID: "m", Seq: 1, Expires: exp}},
		{"replay/foreign-value", Record{Op: OpReplay, Tenant: "t", Agent: "a", ID: "m", Seq: 1, Expires: exp, Value: []byte("x")}},
		{"idem/no-first-message", Record{Op: OpIdem, Tenant: "t", Agent: "a", ID: "k", Expires: exp}},
		{"idem/foreign-seq", Record{Op: OpIdem, Tenant: "t", Agent: "a", ID: "k", FirstMessageID: "m", Seq: 3, Expires: exp}},
		{"marker/no-kind", Record{Op: OpMarker, ID: "x", Expires: exp}},
		{"marker/foreign-decision", Record{Op: OpMarker, MarkerKind: "k", ID: "x", Expires: exp, Decision: Decision{Route: "allow"}}},
		{"hold/no-deadline", Record{Op: OpHold, ID: "x"}},
		{"hold-delete/foreign-expiry", Record{Op: OpHoldDelete, ID: "x", Expires: exp}},
		{"outcome/empty", Record{Op: OpOutcome, Seq: 1}},
		{"outcome/foreign-id", Record{Op: OpOutcome, Seq: 1, Value: []byte("o"), ID: "x"}},
		{"op/unknown", Record{Op: 99}},
		{"op/fence", Record{Op: opFence}},
		{"id/too-long", Record{Op: OpHoldDelete, ID: strings.Repeat("x", MaxIDBytes+1)}},
		{"time/before-1970", Record{Op: OpHold, ID: "x", Expires: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.r.Validate(); !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate(%+v) = %v; want ErrInvalid", tc.r, err)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := encodeAll(sampleRecords())
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"version", append([]byte{2}, good[1:]...), ErrVersion},
		{"truncated", good[:len(good)-1], ErrCorrupt},
		{"unknown-op", appendRecord([]byte{formatV1}, []byte{99, 0}), ErrCorrupt},
		{"trailing", appendRecord([]byte{formatV1}, append(encodeRecord(Record{Op: OpHoldDelete, ID: "x"}, 0), 0)), ErrCorrupt},
		{"invalid-record", appendRecord([]byte{formatV1}, encodeRecord(Record{Op: OpOutcome}, 0)), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeAll(tc.b); !errors.Is(err, tc.want) {
				t.Errorf("decode(%s) = %v; want %v", tc.name, err, tc.want)
			}
		})
	}
}

// FuzzDecode: any bytes either decode to valid records that encode back to
// the same bytes, or fail with ErrCorrupt or ErrVersion; never a panic.
func FuzzDecode(f *testing.F) {
	f.Add(encodeAll(sampleRecords()))
	f.Add([]byte{formatV1})
	f.Add([]byte{formatV1, 3, byte(OpHoldDelete), 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeAll(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("decode = %v; want ErrCorrupt or ErrVersion", err)
			}
			return
		}
		for _, r := range recs {
			if r.Op == opFence {
				continue
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("decoded an invalid record: %v", err)
			}
		}
		// Canonical form: varints could be non-minimal, so compare the
		// records after a second round trip, not the bytes.
		again, err := decodeAll(encodeAll(recs))
		if err != nil || !reflect.DeepEqual(again, recs) {
			t.Fatalf("re-encoding changed the records: %v", err)
		}
	})
}
