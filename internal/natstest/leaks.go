package natstest

import "go.uber.org/goleak"

// LeakOptions are the goroutines goleak must not count in packages that
// start a nats-server or open Pebble: both keep process-wide background
// goroutines that outlive any one server or store.
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.LeakOptions()...) }
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*ipQueue[...]).pop"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2.(*tableCacheShard).releaseLoop"),
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"),
	}
}
