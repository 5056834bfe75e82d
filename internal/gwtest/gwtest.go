// Package gwtest runs a gateway inside a test, for the packages that test
// the gateway from outside (dev environment, transport, OIDC exchange).
package gwtest

import (
	"context"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway"
)

// Run runs gw until the test ends and returns once it is ready. The test
// fails if Run returns first (what says as whom it ran) or if it is not
// ready within 20 s. At cleanup it cancels Run, waits for it (60 s at
// most: longer means stuck) and closes gw; an error from either fails
// the test. The returned context ends with Run.
func Run(t testing.TB, gw *gateway.Gateway, what string) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("gateway Run did not return after cancel: stuck")
		}
		if err := gw.Close(); err != nil {
			t.Errorf("gateway Close: %v", err)
		}
	})
	select {
	case <-gw.Ready():
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("gateway Run %s = %v", what, err)
	case <-time.After(20 * time.Second):
		t.Fatal("gateway not ready")
	}
	return ctx
}
