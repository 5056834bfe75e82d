// Package operator defines the operator's requests to the gateway: a
// replay (or dry run) of a denied message. Requests are signed by the
// operator's nkey and carry its credential, like envelopes, but with
// their own signing context so that neither can stand for the other. It
// knows nothing of NATS subscriptions or the pipeline.
package operator
