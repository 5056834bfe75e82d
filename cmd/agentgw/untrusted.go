package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/subjects/reason"
)

// untrustedKey keeps the first notice or reply a wait refused for a
// gateway key not among --gateway-key, to say so when the wait ends
// empty: the gateway's signing key may have changed, and this run been
// left out. The key is the message's word, unverified: whoever may
// publish on the reply subject can name any. It also notes a reply
// refused for the curve key it was sealed from, which a rotation of the
// gateway's curve key explains.
type untrustedKey struct {
	err     error
	sealed  bool
	refused bool // anything was refused
}

// reject is a client.WaitOptions.OnReject.
func (u *untrustedKey) reject(err error) {
	u.refused = true
	if u.err == nil && errors.Is(err, client.ErrUnknownKey) {
		u.err = err
	}
	if reason.Of(err) == reason.SealMismatch {
		u.sealed = true
	}
}

// emptyWait is the exit code of a wait that ended with nothing
// accepted: 3 when a notice or reply came and was refused (it did not
// verify), 4 when nothing came, which says nothing of the outcome: the
// request may have been delivered and acted on.
func (u *untrustedKey) emptyWait() int {
	if u.refused {
		return exitRejected
	}
	return exitUndetermined
}

func (u *untrustedKey) say(w io.Writer) {
	if u.err != nil {
		fmt.Fprintf(w, "  What came for it %s\n", unverifiedKey(u.err, "--gateway-key"))
	}
	if u.sealed {
		fmt.Fprintf(w, "  A reply came sealed from a curve key other than --gateway-xkey and --reply-xkey. If the gateway's curve key changed, pass its new public key, taken from the gateway's configuration, with --reply-xkey.\n")
	}
}

// unverifiedKey says that err, an ErrUnknownKey refusal, names a gateway
// key not among the trusted ones (among names their setting), and that
// the name is the message's word.
func unverifiedKey(err error, among string) string {
	return fmt.Sprintf("names a gateway key not among %s (%s). That is unverified: if the gateway's signing key changed, take the new key from the gateway's configuration, never from this message.", among, clean(err.Error()))
}
