package exchange

import (
	"testing"
	"time"
)

func TestUnverifiedEventsBounded(t *testing.T) {
	var u unverifiedEvents
	t0 := time.Unix(1000, 0)
	admitted := 0
	for i := range 3 * UnverifiedEventsPerSecond {
		ok, dropped := u.admit(t0.Add(time.Duration(i) * time.Millisecond / 10))
		if dropped != 0 {
			t.Fatalf("a second not yet ended reported %d dropped", dropped)
		}
		if ok {
			admitted++
		}
	}
	if admitted != UnverifiedEventsPerSecond {
		t.Errorf("admitted %d in one second; want %d", admitted, UnverifiedEventsPerSecond)
	}
	ok, dropped := u.admit(t0.Add(time.Second))
	if !ok || dropped != 2*UnverifiedEventsPerSecond {
		t.Errorf("first event of the next second = %v, %d dropped before; want admitted, %d", ok, dropped, 2*UnverifiedEventsPerSecond)
	}
}
