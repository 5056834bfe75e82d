// verifyDelivery, case for case the Go SDK's TestVerifyDelivery: every
// forgery is refused with its typed reason, and nothing is handed out
// before the token verifies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "@nats-io/nkeys";
import { VerificationError } from "../src/errors.js";
import type { ReasonCode } from "../src/reason.js";
import { Box, curveKeyPair } from "../src/keys.js";
import { createCurve } from "@nats-io/nkeys";
import { DEFAULT_CONSUMER_SKEW_MS, verifyDelivery, type VerifyOptions } from "../src/verify.js";
import { signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import { formatDelivery } from "../src/delivery.js";
import { buildEnvelope, parseEnvelope, signEnvelope } from "../src/envelope.js";
import { digestHex } from "../src/internal/bytes.js";
import { bytes, dec } from "./helpers.js";
import { AUDIENCE, CLOCK, docOf, editDoc, forward, newActor, newWorld, TARGET, TENANT, unix, type Forward, type Msg } from "./world.js";

/** caseOptions is opts(over), without a curve key when over sets curve to undefined. */
function caseOptions(opts: (over?: Partial<VerifyOptions>) => VerifyOptions, over: Partial<VerifyOptions> | undefined): VerifyOptions {
  const o = opts(over);
  if (over && "curve" in over && over.curve === undefined) {
    delete o.curve;
  }
  return o;
}

/** refusal verifies m with o, checks that case name is refused with a VerificationError of reason want, and returns it. */
function refusal(name: string, m: Msg, o: VerifyOptions, want: ReasonCode): VerificationError {
  let err: unknown;
  try {
    verifyDelivery(m.subject, m.headers, m.data, o);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof VerificationError, `${name}: ${String(err)}; want a VerificationError ${want}`);
  assert.equal(err.reason, want, `${name}: ${err.message}`);
  return err;
}

test("verifyDelivery: genuine deliveries verify, every forgery is refused with its reason", () => {
  const w = newWorld();
  const a = newActor();
  const consumer = new Box(createCurve());
  const stranger = new Box(createCurve());
  const otherGW = createServer();
  const plaintext = bytes(`{"order":"A-1","amount_cents":2500}`);
  const sealedFwd: Forward = { w, a, target: TARGET, plain: plaintext, sealed: true, consumer };
  const plainFwd: Forward = { w, a, target: "orders.status", plain: bytes(`{"q":"status"}`) };
  const withEdit = (f: Forward, edit: (c: ClaimsToSign) => void): Forward => ({ ...f, edit });
  const other = forward(sealedFwd); // another genuine message, to swap its parts in
  // A re-sealed payload that opens with the consumer's key but is sealed
  // by stranger, not the gateway's curve key, its bytes bound by a
  // trusted gateway's token: only gatewayXKeys refuses it.
  const strangerSealed = stranger.seal(plaintext, consumer.publicKey);
  const sealedByStranger = (): Msg =>
    editDoc(forward(withEdit(sealedFwd, (c) => (c.payloadDigest = digestHex(strangerSealed)))), (d) => {
      d.sealed = Buffer.from(strangerSealed).toString("base64url");
      d.sealed_from = stranger.publicKey;
    });

  const opts = (over: Partial<VerifyOptions> = {}): VerifyOptions => ({
    tenant: TENANT,
    targets: [TARGET, "orders.status"],
    trustedGateways: [w.gwKey],
    curve: consumer,
    gatewayXKeys: [w.gwCurve.publicKey],
    verifyAgentSignature: true,
    now: new Date(CLOCK.getTime() + 10_000),
    skewMs: DEFAULT_CONSUMER_SKEW_MS,
    ...over,
  });

  const cases: { name: string; msg: () => Msg; opt?: Partial<VerifyOptions>; want?: ReasonCode; sealed?: boolean }[] = [
    { name: "ok/sealed", msg: () => forward(sealedFwd), sealed: true },
    { name: "ok/plain", msg: () => forward(plainFwd) },
    { name: "ok/plain_envelope_resealed", msg: () => forward({ w, a, target: TARGET, plain: plaintext, consumer }), sealed: true },
    {
      name: "ok/no_agent_header",
      msg: () => {
        const m = forward(sealedFwd);
        m.headers.delete("Agentgw-Agent");
        return m;
      },
      sealed: true,
    },
    { name: "ok/within_skew", msg: () => forward(withEdit(sealedFwd, (c) => (c.exp = unix(CLOCK) + 1))), sealed: true },
    { name: "ok/sealed_by_another_key_without_allow_list", opt: { gatewayXKeys: [] }, msg: sealedByStranger, sealed: true },

    { name: "deny/wrong_subject", want: "invalid_subject", msg: () => ({ ...forward(sealedFwd), subject: `agentgw.cap.${TENANT}.payments.send` }) },
    { name: "deny/subject_of_another_tenant", want: "invalid_subject", opt: { tenant: "tenant_b" }, msg: () => forward(sealedFwd) },
    { name: "deny/subject_with_wildcard", want: "invalid_subject", msg: () => ({ ...forward(sealedFwd), subject: `agentgw.cap.${TENANT}.>` }) },
    { name: "deny/missing_token", want: "decision_token_missing", msg: () => editDoc(forward(sealedFwd), (d) => (d.decision = "")) },
    { name: "deny/not_a_delivery", want: "decision_token_missing", msg: () => ({ ...forward(sealedFwd), data: bytes(`{"order":"A-1"}`) }) },
    { name: "deny/unknown_member", want: "decision_token_missing", msg: () => editDoc(forward(sealedFwd), (d) => ((d as any).extra = "x")) },
    { name: "deny/garbage_token", want: "decision_token_invalid", msg: () => editDoc(forward(sealedFwd), (d) => (d.decision = "eyJ0eXAiOiJKV1QifQ.e30.AAAA")) },
    { name: "deny/token_signed_by_another_key", want: "decision_token_invalid", msg: () => forward({ ...sealedFwd, signer: otherGW }) },
    { name: "deny/reply_token_on_cap_subject", want: "decision_token_invalid", msg: () => forward(withEdit(sealedFwd, (c) => (c.route = "reply"))) },
    { name: "deny/notice_token_on_cap_subject", want: "decision_token_invalid", msg: () => forward(withEdit(sealedFwd, (c) => (c.route = "notice"))) },
    { name: "deny/approval_token_on_cap_subject", want: "decision_token_invalid", msg: () => forward(withEdit(sealedFwd, (c) => (c.route = "approval"))) },
    {
      name: "deny/expired",
      want: "decision_token_expired",
      msg: () =>
        forward(
          withEdit(sealedFwd, (c) => {
            c.iat = unix(CLOCK) - 120;
            c.exp = unix(CLOCK) - 60;
          }),
        ),
    },
    { name: "deny/issued_in_the_future", want: "decision_token_invalid", msg: () => forward(withEdit(sealedFwd, (c) => { c.iat = unix(CLOCK) + 3600; c.exp = c.iat + 60; })) },
    { name: "deny/token_for_another_target", want: "decision_token_audience", msg: () => forward(withEdit(sealedFwd, (c) => (c.aud = "orders.status"))) },
    {
      // A genuine message for orders.status replayed onto the refunds subject.
      name: "deny/token_from_another_subject",
      want: "decision_token_audience",
      msg: () => ({ ...forward(plainFwd), subject: `agentgw.cap.${TENANT}.${TARGET}` }),
    },
    { name: "deny/token_for_another_tenant", want: "decision_token_audience", msg: () => forward(withEdit(sealedFwd, (c) => (c.tenant = "tenant_b"))) },
    {
      name: "deny/body_altered",
      want: "decision_token_binding",
      msg: () => {
        const m = forward(sealedFwd);
        return { ...m, data: bytes(dec.decode(m.data).replace(`"idem-1"`, `"idem-2"`)) };
      },
    },
    { name: "deny/body_swapped", want: "decision_token_binding", msg: () => editDoc(forward(sealedFwd), (d) => (d.envelopeText = docOf(other).envelopeText)) },
    {
      name: "deny/resealed_altered",
      want: "decision_token_binding",
      msg: () =>
        editDoc(forward(sealedFwd), (d) => {
          const ct = Buffer.from(d.sealed!, "base64url");
          ct[ct.length - 1]! ^= 1;
          d.sealed = ct.toString("base64url");
        }),
    },
    { name: "deny/resealed_swapped", want: "decision_token_binding", msg: () => editDoc(forward(sealedFwd), (d) => (d.sealed = docOf(other).sealed!)) },
    {
      name: "deny/resealed_stripped_plain_envelope",
      want: "decision_token_binding",
      msg: () =>
        editDoc(forward({ w, a, target: TARGET, plain: plaintext, consumer }), (d) => {
          d.sealed = "";
          d.sealed_from = "";
        }),
    },
    {
      name: "deny/resealed_stripped_sealed_envelope",
      want: "seal_broken",
      msg: () =>
        editDoc(forward(sealedFwd), (d) => {
          d.sealed = "";
          d.sealed_from = "";
        }),
    },
    { name: "deny/resealed_not_base64", want: "seal_broken", msg: () => editDoc(forward(sealedFwd), (d) => (d.sealed = "not base64!")) },
    { name: "deny/payload_for_another_consumer", want: "seal_broken", msg: () => forward({ ...sealedFwd, consumer: stranger }) },
    { name: "deny/sealed_from_spoofed", want: "seal_broken", msg: () => editDoc(forward(sealedFwd), (d) => (d.sealed_from = stranger.publicKey)) },
    { name: "deny/sealed_by_key_outside_allow_list", want: "seal_broken", msg: sealedByStranger },
    {
      name: "deny/sealed_from_spoofed_any_sender",
      want: "seal_broken",
      opt: { gatewayXKeys: [] },
      msg: () => editDoc(forward(sealedFwd), (d) => (d.sealed_from = stranger.publicKey)),
    },
    { name: "deny/no_consumer_key", want: "seal_broken", opt: { curve: undefined }, msg: () => forward(sealedFwd) },
    {
      name: "deny/agent_header_forged",
      want: "decision_token_binding",
      msg: () => {
        const m = forward(sealedFwd);
        m.headers.set("Agentgw-Agent", newActor().pub);
        return m;
      },
    },
    { name: "deny/claims_disagree_with_body", want: "decision_token_binding", msg: () => forward(withEdit(sealedFwd, (c) => (c.messageId = "another-message-id-000"))) },
    { name: "deny/agent_signature_forged", want: "bad_signature", msg: () => editDoc(forward(sealedFwd), (d) => (d.signature = docOf(other).signature!)) },
    { name: "deny/agent_signature_missing", want: "bad_signature", msg: () => editDoc(forward(sealedFwd), (d) => (d.signature = "")) },
  ];
  for (const tc of cases) {
    const m = tc.msg();
    const o = caseOptions(opts, tc.opt);
    if (tc.want !== undefined) {
      const err = refusal(tc.name, m, o, tc.want);
      assert.ok(!err.message.includes("A-1"), `${tc.name}: the error quotes the payload`);
      continue;
    }
    const d = verifyDelivery(m.subject, m.headers, m.data, o);
    const want = tc.name === "ok/plain" ? `{"q":"status"}` : dec.decode(plaintext);
    assert.equal(d.string(), want, tc.name);
    assert.equal(d.sealed, tc.sealed ?? false, tc.name);
    assert.equal(d.agent, a.pub, tc.name);
    assert.equal(d.claims.subject, a.pub, tc.name);
    assert.equal(d.target, d.claims.audience, tc.name);
    for (const s of [String(d), JSON.stringify(d)]) {
      assert.ok(!s.includes("A-1") && !s.includes(digestHex(d.payload)), `${tc.name}: the printed delivery shows the payload or its digest: ${s}`);
      assert.ok(s.includes(`${d.payload.length} bytes`) || s.includes(`"payload_bytes":${d.payload.length}`), `${tc.name}: the printed delivery lacks its length: ${s}`);
    }
  }
});

test("verifyDelivery: the envelope's own limits apply to the bound body", () => {
  const w = newWorld();
  const a = newActor();
  const m = forward({ w, a, target: TARGET, plain: bytes(`{"q":"${"x".repeat(300)}"}`) });
  const o: VerifyOptions = { tenant: TENANT, targets: [TARGET], trustedGateways: [w.gwKey], now: CLOCK, limits: { maxBytes: 256 } };
  assert.throws(() => verifyDelivery(m.subject, undefined, m.data, o), (e: VerificationError) => e.reason === "oversized");
});

test("verifyDelivery: a consumer key from a seed opens what the gateway re-sealed", () => {
  const w = newWorld();
  const a = newActor();
  const ck = createCurve();
  const seed = new TextDecoder().decode(ck.getSeed());
  const m = forward({ w, a, target: TARGET, plain: bytes(`{"n":1}`), sealed: true, consumer: new Box(ck) });
  const d = verifyDelivery(m.subject, m.headers, m.data, {
    tenant: TENANT,
    targets: [TARGET],
    trustedGateways: [w.gwKey],
    curve: new Box(curveKeyPair(seed)),
    now: CLOCK,
  });
  assert.deepEqual(d.json(), { n: 1 });
});

test("verifyDelivery: an envelope nested as deep as the limits allow (1024) verifies", () => {
  const w = newWorld();
  const a = newActor();
  const lim = { maxBytes: 65536, maxDepth: 1024, maxString: 16384 };
  for (const depth of [1023, 1024]) {
    // The envelope is level 1, its payload 2, and each {"d":…} one more.
    const plain = bytes('{"d":'.repeat(depth - 3) + "{}" + "}".repeat(depth - 3));
    const body = buildEnvelope(
      { tenant: TENANT, audience: AUDIENCE, capability: "tool_call", target: TARGET, payload: { plain }, limits: lim },
      CLOCK,
    );
    const env = parseEnvelope(body, lim);
    const c: ClaimsToSign = {
      jti: `JTIDEPTH${depth}`,
      sub: a.pub,
      aud: TARGET,
      iat: unix(CLOCK),
      exp: unix(CLOCK) + 60,
      tenant: TENANT,
      scope: "refund:draft",
      traceId: env.traceId,
      messageId: env.messageId,
      bodyDigest: digestHex(body),
      payloadDigest: digestHex(plain),
      route: "allow",
    };
    const decision = signBatch(w.gwSign, [wireClaims(w.gwKey, c)], false)[0]!;
    const data = formatDelivery({ decision, signature: signEnvelope((m) => a.kp.sign(m), body), sealed: "", sealedFrom: "", envelope: body });
    const o: VerifyOptions = { tenant: TENANT, targets: [TARGET], trustedGateways: [w.gwKey], now: CLOCK, limits: lim };
    assert.equal(verifyDelivery(`agentgw.cap.${TENANT}.${TARGET}`, undefined, data, o).messageId, env.messageId, `depth ${depth}`);
    // One level more is the envelope's own refusal, not a missing token.
    if (depth === 1024) {
      const deeper = { ...lim, maxDepth: 1023 };
      assert.throws(() => verifyDelivery(`agentgw.cap.${TENANT}.${TARGET}`, undefined, data, { ...o, limits: deeper }), (e: VerificationError) => e.reason !== "decision_token_missing");
    }
  }
});

test("verifyDelivery: unknownKey marks exactly the refusals for want of a configured key, with their usual reasons", () => {
  const w = newWorld();
  const a = newActor();
  const consumer = new Box(createCurve());
  const stranger = new Box(createCurve());
  const otherGW = createServer();
  const sealedFwd: Forward = { w, a, target: TARGET, plain: bytes(`{"order":"A-1"}`), sealed: true, consumer };
  const opts = (over: Partial<VerifyOptions> = {}): VerifyOptions => ({
    tenant: TENANT,
    targets: [TARGET],
    trustedGateways: [w.gwKey],
    curve: consumer,
    gatewayXKeys: [w.gwCurve.publicKey],
    now: CLOCK,
    ...over,
  });
  const cases: { name: string; msg: () => Msg; opt?: Partial<VerifyOptions>; want: ReasonCode; unknownKey: boolean }[] = [
    { name: "issuer_not_trusted", want: "decision_token_invalid", unknownKey: true, msg: () => forward({ ...sealedFwd, signer: otherGW }) },
    {
      // Checked before the signature: the issuer alone decides.
      name: "issuer_not_trusted_bad_signature",
      want: "decision_token_invalid",
      unknownKey: true,
      msg: () => forward({ ...sealedFwd, signer: w.gwSign, issuer: otherGW.getPublicKey() }),
    },
    { name: "sealed_from_outside_gateway_xkeys", want: "seal_broken", unknownKey: true, opt: { gatewayXKeys: [stranger.publicKey] }, msg: () => forward(sealedFwd) },
    { name: "no_consumer_key", want: "seal_broken", unknownKey: true, opt: { curve: undefined }, msg: () => forward(sealedFwd) },
    { name: "sealed_to_another_consumer_key", want: "seal_broken", unknownKey: true, msg: () => forward({ ...sealedFwd, consumer: stranger }) },

    { name: "bad_signature_under_trusted_key", want: "decision_token_invalid", unknownKey: false, msg: () => forward({ ...sealedFwd, signer: otherGW, issuer: w.gwKey }) },
    {
      name: "body_digest_mismatch",
      want: "decision_token_binding",
      unknownKey: false,
      msg: () => {
        const m = forward(sealedFwd);
        return { ...m, data: bytes(dec.decode(m.data).replace(`"idem-1"`, `"idem-2"`)) };
      },
    },
    {
      name: "expired",
      want: "decision_token_expired",
      unknownKey: false,
      msg: () =>
        forward({
          ...sealedFwd,
          edit: (c) => {
            c.iat = unix(CLOCK) - 120;
            c.exp = unix(CLOCK) - 60;
          },
        }),
    },
    { name: "resealed_not_base64", want: "seal_broken", unknownKey: false, msg: () => editDoc(forward(sealedFwd), (d) => (d.sealed = "not base64!")) },
  ];
  for (const tc of cases) {
    const err = refusal(tc.name, tc.msg(), caseOptions(opts, tc.opt), tc.want);
    assert.equal(err.unknownKey, tc.unknownKey, `${tc.name}: unknownKey of ${err.message}`);
  }
  // The flag is false unless set.
  assert.equal(new VerificationError("seal_broken", "x").unknownKey, false);
  assert.equal(new VerificationError("seal_broken", "x", { unknownKey: true }).unknownKey, true);
});

test("verifyDelivery: targets given as a string by untyped JavaScript match no target, not its substrings", () => {
  // "refunds.draft_refund" as a string includes "draft_refund" and
  // "refunds": a delivery the gateway authorized for either must not
  // verify for a consumer that serves only refunds.draft_refund.
  const w = newWorld();
  const a = newActor();
  for (const target of ["draft_refund", "refunds", TARGET]) {
    const m = forward({ w, a, target, plain: bytes(`{"order":"A-1"}`) });
    const o = { tenant: TENANT, targets: TARGET as unknown as readonly string[], trustedGateways: [w.gwKey], now: CLOCK } as VerifyOptions;
    refusal(`target ${target}`, m, o, "invalid_subject");
  }
});
