package oidc_test

import (
	"sync"
	"testing"
)

// TestConcurrentFirstExchangesShareOneFetch: exchanges that arrive
// together before the IdP's keys were ever fetched wait for the one fetch
// the first of them started; they are not refused exchange_idp_unavailable
// because a second fetch may not start so soon.
func TestConcurrentFirstExchangesShareOneFetch(t *testing.T) {
	h := newHarness(t)
	h.serve()
	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.exchange(tok, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("exchange %d: %v", i, err)
		}
	}
}
