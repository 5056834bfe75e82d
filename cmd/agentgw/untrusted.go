package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/agentgw/agentgw/client"
)

// untrustedKey keeps the first notice or reply a wait refused for a
// gateway key not among --gateway-key, to say so when the wait ends
// empty: the gateway's signing key may have changed, and this run been
// left out. The key is the message's word, unverified: whoever may
// publish on the reply subject can name any.
type untrustedKey struct{ err error }

// reject is a client.WaitOptions.OnReject.
func (u *untrustedKey) reject(err error) {
	if u.err == nil && errors.Is(err, client.ErrUnknownKey) {
		u.err = err
	}
}

func (u *untrustedKey) say(w io.Writer) {
	if u.err != nil {
		fmt.Fprintf(w, "  What came for it %s\n", unverifiedKey(u.err, "--gateway-key"))
	}
}

// unverifiedKey says that err, an ErrUnknownKey refusal, names a gateway
// key not among the trusted ones (among names their setting), and that
// the name is the message's word.
func unverifiedKey(err error, among string) string {
	return fmt.Sprintf("names a gateway key not among %s (%s). That is unverified: if the gateway's signing key changed, take the new key from the gateway's configuration, never from this message.", among, clean(err.Error()))
}
