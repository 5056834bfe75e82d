package transport_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/internal/natstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}
