package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// OperatorAPIPrefix is the JetStream API prefix of operators in the
// least-privilege layout (deploy/accounts.conf and the development
// server): their own account, OPS, has no JetStream and imports from the
// gateway's account only the reads of the denied and audit streams
// (stream info, message get, direct get) under this prefix, the same one
// tenant accounts use (TenantAPIPrefix).
const OperatorAPIPrefix = TenantAPIPrefix

// ErrNoDirectGet: the stream does not allow direct gets, which ReadRecords
// needs. The gateway creates AGENTGW_DENIED and AGENTGW_AUDIT with them.
var ErrNoDirectGet = errors.New("client: stream does not allow direct get")

// RecordQuery says which stored messages of a stream ReadRecords reads.
type RecordQuery struct {
	// Stream is the stream's name. Required.
	Stream string
	// Subject keeps the messages stored on matching subjects; wildcards
	// allowed. Empty: every subject.
	Subject string
	// Since keeps the messages stored at or after it. Zero: from the
	// first.
	Since time.Time
	// From, when set, starts at this stream sequence instead (Since is
	// then ignored).
	From uint64
	// Follow keeps reading messages stored after the start until ctx is
	// done.
	Follow bool
	// Batch is how many messages one request asks for. Zero: 256.
	Batch int
	// Poll is how long Follow waits before asking again when nothing new
	// is stored. Zero: 500 ms.
	Poll time.Duration
}

// Headers the server adds to a message it answers a direct get with.
const (
	hdrStream    = "Nats-Stream"
	hdrSubject   = "Nats-Subject"
	hdrSequence  = "Nats-Sequence"
	hdrTimeStamp = "Nats-Time-Stamp"
	hdrPending   = "Nats-Num-Pending"
	hdrLastSeq   = "Nats-Last-Sequence"
)

// ReadRecords hands fn the messages of q.Stream that q selects, oldest
// first, read with batched direct gets (<prefix>.DIRECT.GET.<stream>, the
// prefix of js) after one stream info. It creates no consumer: a reader
// that may only get messages leaves no state on the server and has
// nothing to set (such as a push consumer's deliver subject) that makes
// the server send them anywhere but to its own inbox.
//
// Without Follow it returns nil after the last message stored when it
// started, and an error wrapping ctx's error (context.Canceled, an
// interrupt) when ctx is done before then: fn was not handed all that q
// selects. With Follow it keeps asking (every Poll while nothing is new)
// and returns nil once ctx is done. It stops at fn's first error and
// returns it. Errors reading the stream wrap ErrStream (with
// jetstream.ErrStreamNotFound when it does not exist) or ErrNoDirectGet.
// The headers the server adds to the answer (Nats-Stream, Nats-Sequence,
// ...) are removed; the message's own headers are kept.
func ReadRecords(ctx context.Context, js jetstream.JetStream, q RecordQuery, fn func(*jetstream.RawStreamMsg) error) error {
	st, err := js.Stream(ctx, q.Stream)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrStream, q.Stream, err)
	}
	info := st.CachedInfo()
	if !info.Config.AllowDirect {
		return fmt.Errorf("%w: %s", ErrNoDirectGet, q.Stream)
	}
	prefix := strings.TrimSuffix(js.Options().APIPrefix, ".")
	if prefix == "" {
		prefix = strings.TrimSuffix(jetstream.DefaultAPIPrefix, ".")
	}
	r := recordReader{nc: js.Conn(), subject: prefix + ".DIRECT.GET." + q.Stream, q: q}
	if r.q.Subject == "" {
		r.q.Subject = ">"
	}
	if r.q.Batch <= 0 {
		r.q.Batch = 256
	}
	if r.q.Poll <= 0 {
		r.q.Poll = 500 * time.Millisecond
	}
	last := info.State.LastSeq // without Follow, nothing after it
	// next is the sequence to ask from; zero asks by q.Since.
	next := q.From
	if next == 0 && q.Since.IsZero() {
		next = 1
	}
	for ctx.Err() == nil {
		msgs, pending, err := r.batch(ctx, next, q.Since)
		if err != nil {
			if ctx.Err() != nil {
				return stopped(ctx, q)
			}
			return err
		}
		if next == 0 && len(msgs) == 0 {
			// Nothing stored since q.Since: what comes is after last.
			next = last + 1
		}
		for _, m := range msgs {
			if !q.Follow && m.Sequence > last {
				return nil
			}
			next = m.Sequence + 1
			if err := fn(m); err != nil {
				return err
			}
		}
		switch {
		case pending > 0 && len(msgs) > 0:
			continue
		case !q.Follow:
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(r.q.Poll):
		}
	}
	return stopped(ctx, q)
}

// stopped is what ReadRecords returns when ctx is done before its end:
// nil when following, which reads until ctx is done; otherwise an error
// wrapping ctx's, since the read is incomplete.
func stopped(ctx context.Context, q RecordQuery) error {
	if q.Follow {
		return nil
	}
	return fmt.Errorf("client: read of %s stopped before its end: %w", q.Stream, ctx.Err())
}

type recordReader struct {
	nc      *nats.Conn
	subject string
	q       RecordQuery
}

// batch asks for up to q.Batch messages from sequence seq (or, when seq is
// zero, stored at or after since) and returns them with the number of
// matching messages left after them.
func (r *recordReader) batch(ctx context.Context, seq uint64, since time.Time) ([]*jetstream.RawStreamMsg, uint64, error) {
	req := map[string]any{"next_by_subj": r.q.Subject, "batch": r.q.Batch, "max_bytes": 4 << 20}
	if seq > 0 {
		req["seq"] = seq
	} else {
		req["start_time"] = since.UTC()
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	inbox := r.nc.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", ErrStream, r.q.Stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := r.nc.PublishRequest(r.subject, inbox, data); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", ErrStream, r.q.Stream, err)
	}
	var msgs []*jetstream.RawStreamMsg
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %s: direct get: %w", ErrStream, r.q.Stream, err)
		}
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			switch m.Header.Get("Status") {
			case "204": // end of batch
				pending, _ := strconv.ParseUint(lastValue(m.Header, hdrPending), 10, 64)
				return msgs, pending, nil
			case "404": // nothing (more) matches
				return msgs, 0, nil
			default:
				return nil, 0, fmt.Errorf("%w: %s: direct get: %s %s", ErrStream, r.q.Stream, m.Header.Get("Status"), m.Header.Get("Description"))
			}
		}
		raw, err := storedMsg(m)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %s: %w", ErrStream, r.q.Stream, err)
		}
		msgs = append(msgs, raw)
	}
}

// storedMsg turns a direct get answer into the stored message. The
// server appends its headers after the message's own, so the last value
// of each is the server's, whatever the publisher put in its headers.
func storedMsg(m *nats.Msg) (*jetstream.RawStreamMsg, error) {
	seq, err := strconv.ParseUint(lastValue(m.Header, hdrSequence), 10, 64)
	if err != nil || seq == 0 {
		return nil, errors.New("direct get answer without a sequence")
	}
	ts, err := time.Parse(time.RFC3339Nano, lastValue(m.Header, hdrTimeStamp))
	if err != nil {
		return nil, fmt.Errorf("direct get answer for sequence %d without a time stamp", seq)
	}
	raw := &jetstream.RawStreamMsg{Subject: lastValue(m.Header, hdrSubject), Sequence: seq, Data: m.Data, Time: ts, Header: m.Header}
	for _, k := range []string{hdrStream, hdrSubject, hdrSequence, hdrTimeStamp, hdrPending, hdrLastSeq} {
		vs := m.Header.Values(k)
		if len(vs) <= 1 {
			m.Header.Del(k)
		} else {
			m.Header[k] = vs[:len(vs)-1]
		}
	}
	return raw, nil
}

func lastValue(h nats.Header, k string) string {
	vs := h.Values(k)
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}
