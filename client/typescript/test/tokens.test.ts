// The consumer's record of decision tokens handed over and how their
// handling fared: the Go SDK's TestTokenRecord, case for case.
import { test } from "node:test";
import assert from "node:assert/strict";
import { VerificationError } from "../src/errors.js";
import { TokenRecord } from "../src/internal/tokens.js";
import type { ReasonCode } from "../src/reason.js";
import { CLOCK } from "./world.js";

test("TokenRecord: once per stream sequence; a redelivery is handed over again only after a failure, acknowledged after a success, left while handling; another sequence is a copy; full refuses until expiry; a clock stepped back revives nothing", () => {
  const t0 = CLOCK.getTime();
  const exp = t0 + 60_000;
  const hour = 3_600_000;
  // What claim gives: "" handed over (undefined), "handled" or "handling"
  // (a redelivery not handed over), or the reason it throws.
  type Want = ReasonCode | "" | "handled" | "handling";
  // [id, stream sequence, delivery count, expires, now, want, then, once
  // handed over: "ok" (settle ok), "fail" (settle failed) or "" (the
  // handler still runs)]
  type Step = [string, number, number, number, number, Want, "ok" | "fail" | ""];
  const cases: [string, number, Step[]][] = [
    ["allow/redelivery_after_a_failure", 4, [
      ["jti-a", 1, 1, exp, t0, "", "fail"],
      ["jti-a", 1, 2, exp, t0 + 1000, "", "fail"],
      ["jti-a", 1, 3, exp, t0 + 2000, "", "ok"],
      ["jti-a", 1, 4, exp, t0 + 3000, "handled", ""],
    ]],
    ["ack/redelivery_after_success", 4, [
      ["jti-a", 1, 1, exp, t0, "", "ok"], // its ack lost, or the handler ran past AckWait
      ["jti-a", 1, 2, exp, t0 + 1000, "handled", ""],
    ]],
    ["leave/redelivery_while_handling", 4, [
      ["jti-a", 1, 1, exp, t0, "", ""],
      ["jti-a", 1, 2, exp, t0 + 1000, "handling", ""],
    ]],
    ["allow/first_seen_on_a_redelivery", 4, [
      ["jti-a", 1, 3, exp, t0, "", "ok"],
    ]],
    ["deny/same_sequence_delivered_first_again", 4, [
      ["jti-a", 1, 1, exp, t0, "", "ok"],
      ["jti-a", 1, 1, exp, t0 + 1000, "decision_token_duplicate", ""], // the durable created again
      ["jti-a", 1, 2, exp, t0 + 2000, "handled", ""], // the first one's redelivery
    ]],
    ["allow/failed_then_delivered_first_again", 4, [
      ["jti-a", 1, 1, exp, t0, "", "fail"],
      ["jti-a", 1, 1, exp, t0 + 1000, "", "ok"], // the durable created again: not handled yet
      ["jti-a", 1, 1, exp, t0 + 2000, "decision_token_duplicate", ""],
    ]],
    ["allow/failed_then_copied", 4, [
      ["jti-a", 1, 1, exp, t0, "", "fail"],
      ["jti-a", 7, 1, exp, t0 + 1000, "", ""],
      ["jti-a", 1, 2, exp, t0 + 2000, "decision_token_duplicate", ""],
    ]],
    ["deny/copy_at_another_sequence", 4, [
      ["jti-a", 1, 1, exp, t0, "", "ok"],
      ["jti-a", 7, 1, exp, t0 + 1000, "decision_token_duplicate", ""],
      ["jti-a", 7, 2, exp, t0 + 1000, "decision_token_duplicate", ""],
      ["jti-a", 1, 2, exp, t0 + 2000, "handled", ""],
    ]],
    ["deny/copy_while_handling", 4, [
      ["jti-a", 1, 1, exp, t0, "", ""],
      ["jti-a", 7, 1, exp, t0 + 1000, "decision_token_duplicate", ""],
    ]],
    ["deny/copy_just_before_expiry", 4, [
      ["jti-a", 1, 1, exp, t0, "", "ok"],
      ["jti-a", 2, 1, exp, exp, "decision_token_duplicate", ""],
    ]],
    ["deny/full_refuses_new_until_expiry", 1, [
      ["jti-a", 1, 1, exp, t0, "", "fail"],
      ["jti-b", 2, 1, exp + hour, t0, "decision_token_record_full", ""],
      ["jti-a", 1, 2, exp, t0, "", "ok"], // its own redelivery still passes
      ["jti-b", 2, 2, exp + hour, exp + 1, "", "ok"],
      ["jti-b", 3, 1, exp + hour, exp + 1000, "decision_token_duplicate", ""],
    ]],
    ["deny/clock_stepped_back_after_expiry", 4, [
      ["jti-a", 1, 1, exp, t0, "", "ok"],
      ["jti-z", 9, 1, exp + hour, exp + 1000, "", "ok"], // drops jti-a
      ["jti-a", 2, 1, exp, t0, "decision_token_expired", ""],
    ]],
  ];
  // Every case runs, and every wrong step is reported.
  const wrong: string[] = [];
  for (const [name, max, steps] of cases) {
    const r = new TokenRecord(max);
    for (const [i, [id, seq, n, expires, now, want, then]] of steps.entries()) {
      let got: Want;
      try {
        got = r.claim(id, "c1", seq, n, expires, now) ?? "";
      } catch (err) {
        got = err instanceof VerificationError ? err.reason : (String(err) as Want);
      }
      if (got !== want) {
        wrong.push(`${name} step ${i}: claim(${id}, seq ${seq}, delivered ${n}) = ${JSON.stringify(got)}; want ${JSON.stringify(want)}`);
        break;
      }
      if (got === "" && then !== "") {
        r.settle(id, then === "ok");
      }
    }
    if (r.size > max) {
      wrong.push(`${name}: record holds ${r.size} tokens; max ${max}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test("TokenRecord: settle of a token not recorded does nothing", () => {
  const t0 = CLOCK.getTime();
  const r = new TokenRecord(4);
  r.settle("jti-x", true);
  r.settle("jti-x", false);
  assert.equal(r.size, 0);
  assert.equal(r.claim("jti-x", "c1", 1, 1, t0 + 60_000, t0), undefined, "a token settled before it was claimed is still new");
  assert.equal(r.claim("jti-x", "c1", 1, 2, t0 + 60_000, t0 + 1_000), "handling");
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
  r.settle("jti-a", false); // handed back
  assert.equal(r.claim("jti-a", "c1", 1, 2, t0 + 60_000, t0 + 2_000), undefined, "its own redelivery, after a failure: handed over");
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
