package mcp

import (
	"context"
	"os"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/internal/natstest"
)

// stdioServerEnv makes the test binary the upstream tool server on
// stdin/stdout, for the bridge's stdio upstream.
const stdioServerEnv = "AGENTGW_MCP_TEST_STDIO_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(stdioServerEnv) == "1" {
		if err := newUpstreamServer(&upstreamServer{}).Run(context.Background(), &sdk.StdioTransport{}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}
