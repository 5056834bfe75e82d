// verifyRequest: an approval request is shown only with a decision token
// (route approval) that a trusted gateway signed over its exact bytes,
// for its target, naming the held envelope it names. Each check, and its
// reason code, as the Go SDK's VerifyRequest.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, createUser } from "@nats-io/nkeys";
import { decodeRequest, verifyRequest, type ApprovalRequest, type RequestVerifyOptions } from "../src/approver.js";
import { checkClaims, ROUTE_ALLOW, ROUTE_APPROVAL, ROUTE_NOTICE, ROUTE_REPLY, verifyDecision } from "../src/decision.js";
import { DeniedError, InvalidRequestError, VerificationError } from "../src/errors.js";
import { digestHex } from "../src/internal/bytes.js";
import { signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import type { ReasonCode } from "../src/reason.js";
import { bytes } from "./helpers.js";
import { approvalRequest, CLOCK, TENANT, unix } from "./world.js";

const gw = createServer();
const requester = createUser().getPublicKey();
const SUBJECT = `agentgw.approval.${TENANT}.payments.send`;
const HELD = "held-message-000000001";
const TRACE = "8a3c60f7d188f8fa79d48a391a778fa6";
const BODY = "076115a7df26e1d53f1533ef4d77d9b221f32486fe662b4a4deada26bd746401";

const doc = approvalRequest(HELD, requester) as {
  deadline: string;
  policy_ids: string[];
  policy_version: string;
  fields: Record<string, unknown>;
};
const data = bytes(JSON.stringify(doc));
const req: ApprovalRequest = decodeRequest(SUBJECT, data, TENANT);

/** token signs the claims the gateway gives this request, changed by over. */
function token(over: Partial<ClaimsToSign> = {}, key = gw): string {
  const c: ClaimsToSign = {
    jti: "JTIAPPROVAL1",
    sub: requester,
    aud: "payments.send",
    iat: unix(CLOCK),
    exp: unix(new Date(doc.deadline)),
    tenant: TENANT,
    scope: "payments:send",
    traceId: TRACE,
    messageId: HELD,
    bodyDigest: BODY,
    payloadDigest: digestHex(data),
    policyIds: doc.policy_ids,
    policyVersion: doc.policy_version,
    route: ROUTE_APPROVAL,
    ...over,
  };
  return signBatch(key, [wireClaims(key.getPublicKey(), c)])[0]!;
}

const opts: RequestVerifyOptions = { trustedGateways: [gw.getPublicKey()], now: new Date(CLOCK.getTime() + 60_000), skewMs: 30_000 };

function reasonOf(fn: () => unknown): ReasonCode | "accepted" {
  try {
    fn();
    return "accepted";
  } catch (err) {
    assert.ok(err instanceof VerificationError && err instanceof DeniedError, String(err));
    return err.reason;
  }
}

test("decision: route approval is a route a token may carry", () => {
  assert.equal(ROUTE_APPROVAL, "approval");
  const c = verifyDecision(token(), { ...opts, audience: "payments.send" });
  assert.equal(c.route, ROUTE_APPROVAL);
  const w = wireClaims(gw.getPublicKey(), {
    jti: "J1",
    sub: requester,
    aud: "payments.send",
    iat: 1,
    exp: 2,
    tenant: TENANT,
    scope: "s",
    traceId: TRACE,
    messageId: HELD,
    bodyDigest: BODY,
    payloadDigest: BODY,
    route: "deny",
  });
  assert.deepEqual(checkClaims(w), ["route is none of allow, reply, notice, approval"]);
  for (const route of [ROUTE_ALLOW, ROUTE_REPLY, ROUTE_NOTICE, ROUTE_APPROVAL]) {
    assert.deepEqual(checkClaims({ ...w, nats: { ...w.nats, route } }), [], route);
  }
});

test("verifyRequest: the gateway's token over these bytes and this held envelope verifies, and returns its claims", () => {
  const c = verifyRequest(token(), data, req, opts);
  assert.equal(c.route, "approval");
  assert.equal(c.audience, "payments.send");
  assert.equal(c.messageId, HELD);
  assert.equal(c.subject, requester);
  assert.equal(c.issuer, gw.getPublicKey());
  assert.equal(c.payloadDigest, digestHex(data));
  // opts.audience is not read: the audience is always the request's target.
  assert.equal(verifyRequest(token(), data, req, { ...opts, audience: "refunds.draft_refund" } as RequestVerifyOptions).id, "JTIAPPROVAL1");
});

test("verifyRequest: every check refuses with its reason code", () => {
  const good = token();
  const cases: [string, () => unknown, ReasonCode | "accepted"][] = [
    ["genuine", () => verifyRequest(good, data, req, opts), "accepted"],
    // The token itself.
    ["no token", () => verifyRequest(undefined, data, req, opts), "decision_token_missing"],
    ["empty token", () => verifyRequest("", data, req, opts), "decision_token_missing"],
    ["not a token", () => verifyRequest("eyJ0eXAiOiJKV1QifQ.e30.AAAA", data, req, opts), "decision_token_invalid"],
    ["signed by an untrusted key", () => verifyRequest(token({}, createServer()), data, req, opts), "decision_token_invalid"],
    ["no trusted gateway", () => verifyRequest(good, data, req, { ...opts, trustedGateways: [] }), "decision_token_invalid"],
    ["issued in the future", () => verifyRequest(token({ iat: unix(CLOCK) + 91 }), data, req, opts), "decision_token_invalid"],
    ["issued within skew", () => verifyRequest(token({ iat: unix(CLOCK) + 90 }), data, req, opts), "accepted"],
    ["expired", () => verifyRequest(good, data, req, { ...opts, now: new Date("2026-11-26T01:24:12Z") }), "decision_token_expired"],
    ["expired within skew", () => verifyRequest(good, data, req, { ...opts, now: new Date("2026-11-26T01:24:11Z") }), "accepted"],
    ["no skew when absent", () => verifyRequest(good, data, req, { trustedGateways: opts.trustedGateways, now: new Date("2026-11-26T01:23:42Z") }), "decision_token_expired"],
    ["negative skew", () => verifyRequest(good, data, req, { ...opts, skewMs: -1 }), "internal_error"],
    ["no clock", () => verifyRequest(good, data, req, { ...opts, now: new Date(NaN) }), "internal_error"],
    // Route approval only.
    ["route allow", () => verifyRequest(token({ route: ROUTE_ALLOW }), data, req, opts), "decision_token_invalid"],
    ["route reply", () => verifyRequest(token({ route: ROUTE_REPLY }), data, req, opts), "decision_token_invalid"],
    ["route notice", () => verifyRequest(token({ route: ROUTE_NOTICE }), data, req, opts), "decision_token_invalid"],
    // The audience is the request's target.
    ["token for another target", () => verifyRequest(token({ aud: "payments.refund" }), data, req, opts), "decision_token_audience"],
    ["request for another target", () => verifyRequest(good, data, { ...req, target: "payments.refund" }, opts), "decision_token_audience"],
    ["request without a target", () => verifyRequest(good, data, { ...req, target: "" }, opts), "decision_token_audience"],
    // The exact bytes.
    ["other bytes", () => verifyRequest(good, bytes(JSON.stringify({ ...doc, fields: { amount_cents: 100, currency: "EUR" } })), req, opts), "decision_token_binding"],
    ["the bytes with a space more", () => verifyRequest(good, bytes(JSON.stringify(doc) + " "), req, opts), "decision_token_binding"],
    ["token over other bytes", () => verifyRequest(token({ payloadDigest: digestHex(bytes("{}")) }), data, req, opts), "decision_token_binding"],
    // The held envelope, from the token or from the request.
    ["token of another tenant", () => verifyRequest(token({ tenant: "tenant_b" }), data, req, opts), "decision_token_binding"],
    ["request of another tenant", () => verifyRequest(good, data, { ...req, tenant: "tenant_b" }, opts), "decision_token_binding"],
    ["token naming another held message", () => verifyRequest(token({ messageId: "held-message-000000002" }), data, req, opts), "decision_token_binding"],
    ["request naming another held message", () => verifyRequest(good, data, { ...req, heldMessageId: "held-message-000000002" }, opts), "decision_token_binding"],
    ["token of another agent", () => verifyRequest(token({ sub: createUser().getPublicKey() }), data, req, opts), "decision_token_binding"],
    ["request of another agent", () => verifyRequest(good, data, { ...req, agent: createUser().getPublicKey() }, opts), "decision_token_binding"],
    ["token of another body", () => verifyRequest(token({ bodyDigest: digestHex(bytes("other")) }), data, req, opts), "decision_token_binding"],
    ["request of another body", () => verifyRequest(good, data, { ...req, bodyDigest: `sha256:${digestHex(bytes("other"))}` }, opts), "decision_token_binding"],
    ["request body digest without its prefix", () => verifyRequest(good, data, { ...req, bodyDigest: BODY }, opts), "decision_token_binding"],
    ["request body digest in upper case", () => verifyRequest(good, data, { ...req, bodyDigest: `sha256:${BODY.toUpperCase()}` }, opts), "decision_token_binding"],
    ["token of another trace", () => verifyRequest(token({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736" }), data, req, opts), "decision_token_binding"],
    ["request of another trace", () => verifyRequest(good, data, { ...req, traceId: "4bf92f3577b34da6a3ce929d0e0e4736" }, opts), "decision_token_binding"],
  ];
  for (const [name, fn, want] of cases) {
    assert.equal(reasonOf(fn), want, name);
  }
});

test("decodeRequest: a request is read only from an approval subject of its own tenant", () => {
  assert.equal(decodeRequest(SUBJECT, data, TENANT).heldMessageId, HELD);
  // A tenant_a request published on tenant_b's approval subject, read by a
  // tenant_a approver: the subject's tenant is not the approver's.
  assert.throws(() => decodeRequest(`agentgw.approval.tenant_b.payments.send`, data, TENANT), InvalidRequestError);
});
