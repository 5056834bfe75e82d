// Package faults proves agentgw's promise under real faults: every
// message that entered the ingress stream ends in exactly one place, no
// replay is let in, and no plaintext of a sealed payload leaks, while the
// gateway is killed with SIGKILL, paused past its AckWait, its NATS
// server restarted, its clock skewed against the agents', its output
// streams full, and a cluster node leading the streams killed.
//
// The tests run the real binaries, built once per test binary from this
// module (nats-server at the version pinned in go.mod, and agentgw), on
// file storage in temp directories, through internal/procs. Every run
// ends with the checker in check_test.go, which builds on
// internal/invariant.
//
// `go test ./internal/e2e/faults/` runs the CI-sized suite (about two
// minutes); `make soak DURATION=10m` runs TestSoak for that long.
package faults
