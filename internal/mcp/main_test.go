package mcp

import (
	"context"
	"encoding/json"
	"os"
	"strings"
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
		s := newUpstreamServer(&upstreamServer{})
		// environ shows what the bridge passed the stdio server.
		s.AddTool(&sdk.Tool{Name: "environ", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: strings.Join(os.Environ(), "\n")}}}, nil
		})
		if err := s.Run(context.Background(), &sdk.StdioTransport{}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}
