package bench

import (
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
)

// TestCorpusAsksForNoNotice: with Config.NoNoticeAsked every message the
// agents send, and every copy of one, asks for no decision notice; by
// default none does.
func TestCorpusAsksForNoNotice(t *testing.T) {
	now := time.Now()
	w, err := newWorld(t.TempDir(), 1, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, quiet := range []bool{false, true} {
		for _, a := range w.agents {
			a.noNotice = quiet
		}
		for _, mix := range []Mix{MixPlain, MixHostile} {
			c, err := buildCorpus(w, mix, 40, 64, now)
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.msgs.Len() {
				m := c.msgs.At(i)
				if got := m.Header.Get(header.Notify) == notice.NotifyNone; got != quiet {
					t.Fatalf("%s, noNotice %v: a message with %s %q", mix.Name, quiet, header.Notify, m.Header.Get(header.Notify))
				}
			}
		}
	}
}
