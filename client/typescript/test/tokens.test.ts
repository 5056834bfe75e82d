// The consumer's record of decision tokens handed over: the Go SDK's
// TestTokenRecord, case for case.
import { test } from "node:test";
import assert from "node:assert/strict";
import { VerificationError } from "../src/errors.js";
import { TokenRecord } from "../src/internal/tokens.js";
import type { ReasonCode } from "../src/reason.js";
import { CLOCK } from "./world.js";

test("TokenRecord: once per stream sequence, again only on its redelivery; another sequence is a copy; full refuses until expiry; a clock stepped back revives nothing", () => {
  const t0 = CLOCK.getTime();
  const exp = t0 + 60_000;
  const hour = 3_600_000;
  // [id, stream sequence, delivery count, expires, now, want ("" = handed over)]
  type Step = [string, number, number, number, number, ReasonCode | ""];
  const cases: [string, number, Step[]][] = [
    ["allow/redelivery_same_sequence", 4, [
      ["jti-a", 1, 1, exp, t0, ""],
      ["jti-a", 1, 2, exp, t0 + 1000, ""],
      ["jti-a", 1, 3, exp, t0 + 2000, ""],
    ]],
    ["allow/first_seen_on_a_redelivery", 4, [
      ["jti-a", 1, 3, exp, t0, ""],
    ]],
    ["deny/same_sequence_delivered_first_again", 4, [
      ["jti-a", 1, 1, exp, t0, ""],
      ["jti-a", 1, 1, exp, t0 + 1000, "decision_token_duplicate"], // the durable created again
      ["jti-a", 1, 2, exp, t0 + 2000, ""], // the first one's redelivery
    ]],
    ["deny/copy_at_another_sequence", 4, [
      ["jti-a", 1, 1, exp, t0, ""],
      ["jti-a", 7, 1, exp, t0 + 1000, "decision_token_duplicate"],
      ["jti-a", 7, 2, exp, t0 + 1000, "decision_token_duplicate"],
      ["jti-a", 1, 2, exp, t0 + 2000, ""],
    ]],
    ["deny/copy_just_before_expiry", 4, [
      ["jti-a", 1, 1, exp, t0, ""],
      ["jti-a", 2, 1, exp, exp, "decision_token_duplicate"],
    ]],
    ["deny/full_refuses_new_until_expiry", 1, [
      ["jti-a", 1, 1, exp, t0, ""],
      ["jti-b", 2, 1, exp + hour, t0, "decision_token_record_full"],
      ["jti-a", 1, 2, exp, t0, ""], // its own redelivery still passes
      ["jti-b", 2, 2, exp + hour, exp + 1, ""],
      ["jti-b", 3, 1, exp + hour, exp + 1000, "decision_token_duplicate"],
    ]],
    ["deny/clock_stepped_back_after_expiry", 4, [
      ["jti-a", 1, 1, exp, t0, ""],
      ["jti-z", 9, 1, exp + hour, exp + 1000, ""], // drops jti-a
      ["jti-a", 2, 1, exp, t0, "decision_token_expired"],
    ]],
  ];
  for (const [name, max, steps] of cases) {
    const r = new TokenRecord(max);
    steps.forEach(([id, seq, n, expires, now, want], i) => {
      let got: ReasonCode | "" = "";
      try {
        r.claim(id, "c1", seq, n, expires, now);
      } catch (err) {
        assert.ok(err instanceof VerificationError, `${name} step ${i}: ${String(err)}`);
        got = err.reason;
      }
      assert.equal(got, want, `${name} step ${i}: claim(${id}, seq ${seq})`);
    });
    assert.ok(r.size <= max, `${name}: record holds ${r.size} tokens; max ${max}`);
  }
});

test("TokenRecord: expired tokens leave the record soonest first, whatever order they came in", () => {
  const t0 = CLOCK.getTime();
  const r = new TokenRecord(3);
  r.claim("late", "c1", 1, 1, t0 + 30_000, t0);
  r.claim("soon", "c1", 2, 1, t0 + 10_000, t0);
  r.claim("mid", "c1", 3, 1, t0 + 20_000, t0);
  assert.throws(() => r.claim("new", "c1", 4, 1, t0 + 90_000, t0), (e: unknown) => e instanceof VerificationError && e.reason === "decision_token_record_full");
  r.claim("new", "c1", 4, 1, t0 + 90_000, t0 + 10_001); // "soon" expired: room for one
  assert.equal(r.size, 3);
  assert.throws(() => r.claim("newer", "c1", 5, 1, t0 + 90_000, t0 + 10_002), (e: unknown) => e instanceof VerificationError && e.reason === "decision_token_record_full");
  // "mid" and "late" are still there: a copy of them is a copy.
  assert.throws(() => r.claim("late", "c1", 9, 1, t0 + 30_000, t0 + 10_003), (e: unknown) => e instanceof VerificationError && e.reason === "decision_token_duplicate");
  r.claim("newer", "c1", 5, 1, t0 + 90_000, t0 + 30_001); // "mid" and "late" expired
  assert.equal(r.size, 2);
});

test("TokenRecord: the same sequence from another JetStream consumer is not a redelivery", () => {
  const t0 = CLOCK.getTime();
  const r = new TokenRecord(4);
  r.claim("jti-a", "c1", 1, 1, t0 + 60_000, t0);
  assert.throws(
    () => r.claim("jti-a", "c2", 1, 1, t0 + 60_000, t0 + 1_000),
    (e: unknown) => e instanceof VerificationError && e.reason === "decision_token_duplicate",
  );
  r.claim("jti-a", "c1", 1, 2, t0 + 60_000, t0 + 2_000); // its own redelivery
});

test("TokenRecord: after a clock reading that was ahead, a token expiring after every dropped one is handed over; one expiring no later is refused", () => {
  const t0 = CLOCK.getTime();
  const r = new TokenRecord(8);
  r.claim("jti-a", "c1", 1, 1, t0 + 60_000, t0);
  r.claim("jti-z", "c1", 2, 1, t0 + 3_600_000, t0 + 600_000); // ahead: drops jti-a
  const back = t0 + 1_000;
  r.claim("jti-b", "c1", 3, 1, t0 + 300_000, back); // never handed over
  const expired = (e: unknown): boolean => e instanceof VerificationError && e.reason === "decision_token_expired";
  assert.throws(() => r.claim("jti-c", "c1", 4, 1, t0 + 30_000, back), expired, "expires before a dropped token");
  assert.throws(() => r.claim("jti-a", "c1", 5, 1, t0 + 60_000, back), expired, "a copy of the dropped token");
  assert.throws(
    () => r.claim("jti-z", "c1", 6, 1, t0 + 3_600_000, back),
    (e: unknown) => e instanceof VerificationError && e.reason === "decision_token_duplicate",
    "a copy of a recorded token",
  );
});
