package audit

import (
	"reflect"
	"strings"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	a, b := full(), Event{Time: full().Time, Kind: KindResponse, Detail: "line one\nline two"}
	a.Detail = "quoted \"x\" <y> & line\nbreak \u2028" // valid UTF-8: survives a round trip
	var msg []byte
	msg = a.AppendLine(msg)
	msg = b.AppendLine(msg)
	if n := strings.Count(string(msg), "\n"); n != 1 {
		t.Fatalf("two events joined with %d newlines: %s", n, msg)
	}
	got, err := Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[1].AppendJSON(nil), b.AppendJSON(nil)) || got[0].Detail != a.Detail {
		t.Fatalf("Decode = %+v", got)
	}
	one, err := Decode(a.AppendJSON(nil))
	if err != nil || len(one) != 1 {
		t.Fatalf("a single-event message: %v, %v", one, err)
	}
	for name, bad := range map[string]string{"empty": "", "blank lines": "\n \n", "not json": `{"event":"decision"}` + "\nnope"} {
		if evs, err := Decode([]byte(bad)); err == nil {
			t.Errorf("%s: Decode = %v, nil; want an error", name, evs)
		}
	}
}
