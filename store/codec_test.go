package store

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

func TestCodecRoundTrip(t *testing.T) {
	d := Decision{Route: RouteApproval, Reason: reason.PolicyDenied, Target: "refunds.draft_refund",
		Capability: "tool_call", PolicyIDs: []string{"a", "", "c"}, PolicyVersion: "v9", OutputMsgID: "gw-1"}
	re := ReplayEntry{Seq: 1 << 40, Expires: t0.Add(123 * time.Nanosecond), BodyDigest: [32]byte{9, 8, 7}, Decision: d, Acked: true}
	got, err := decodeReplay(encodeReplay(re))
	if err != nil || !reflect.DeepEqual(got, re) {
		t.Fatalf("decodeReplay(encodeReplay(e)) = %+v, %v; want %+v", got, err, re)
	}
	ie := IdemEntry{PayloadDigest: [32]byte{1}, MessageID: "m-1", Expires: t0, Decision: Decision{Route: RouteAllow}}
	gotI, err := decodeIdem(encodeIdem(ie))
	if err != nil || !reflect.DeepEqual(gotI, ie) {
		t.Fatalf("decodeIdem(encodeIdem(e)) = %+v, %v; want %+v", gotI, err, ie)
	}
	// The acked flag lives at a fixed offset.
	v := encodeReplay(ReplayEntry{Seq: 1, Expires: t0})
	if v[offFlags] != 0 {
		t.Fatalf("flags byte of an unacked entry = %d", v[offFlags])
	}
}

func TestCodecRejectsDamage(t *testing.T) {
	good := encodeReplay(rentry(7, t0))
	for name, v := range map[string][]byte{
		"empty":           {},
		"unknown version": append([]byte{2}, good[1:]...),
		"truncated":       good[:len(good)-1],
		"trailing":        append(bytes.Clone(good), 0),
		"huge string":     append(bytes.Clone(good[:len(good)-3]), 0xff, 0xff, 0xff, 0x0f),
	} {
		if _, err := decodeReplay(v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeReplay(%s) = %v; want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encodeReplay(rentry(7, t0)))
	f.Add(encodeIdem(IdemEntry{MessageID: "m", Expires: t0, Decision: Decision{PolicyIDs: []string{"p"}}}))
	f.Add([]byte{valueV1, 0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Never panic; whatever decodes survives a re-encode unchanged.
		if e, err := decodeReplay(b); err == nil {
			if again, err := decodeReplay(encodeReplay(e)); err != nil || !reflect.DeepEqual(again, e) {
				t.Fatalf("replay round trip: %+v, %v; want %+v", again, err, e)
			}
		}
		if e, err := decodeIdem(b); err == nil {
			if again, err := decodeIdem(encodeIdem(e)); err != nil || !reflect.DeepEqual(again, e) {
				t.Fatalf("idem round trip: %+v, %v; want %+v", again, err, e)
			}
		}
		_, _ = decodeUvarints("x", b, 2)
		_, _ = decodeTime("x", b)
	})
}
