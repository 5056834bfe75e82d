// A world of test keys and a stand-in for the gateway's output side (a
// delivery signed with a test gateway key), for the verification tests
// that need exact control of every byte. The end-to-end tests use the
// real gateway instead.
import { createCurve, createServer, createUser, type KeyPair } from "@nats-io/nkeys";
import { buildEnvelope, parseEnvelope, signEnvelope, type Payload } from "../src/envelope.js";
import { formatDelivery, type DeliveryDoc } from "../src/delivery.js";
import { b64url, digestHex } from "../src/internal/bytes.js";
import { signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import { Box } from "../src/keys.js";
import { bytes } from "./helpers.js";

export const TENANT = "tenant_a";
export const AUDIENCE = "billing-gateway";
export const TARGET = "refunds.draft_refund";
/** CLOCK is the instant the test envelopes and tokens are made at. */
export const CLOCK = new Date("2026-11-26T01:08:41Z");
export const unix = (d: Date): number => Math.floor(d.getTime() / 1000);

export interface Actor {
  kp: KeyPair;
  pub: string;
  curve: KeyPair;
  box: Box;
  xkey: string;
}

export function newActor(): Actor {
  const kp = createUser();
  const curve = createCurve();
  const box = new Box(curve);
  return { kp, pub: kp.getPublicKey(), curve, box, xkey: box.publicKey };
}

export interface World {
  gwSign: KeyPair;
  gwKey: string;
  gwCurve: Box;
  gwCurveKP: KeyPair;
}

export function newWorld(): World {
  const gwSign = createServer();
  const gwCurveKP = createCurve();
  return { gwSign, gwKey: gwSign.getPublicKey(), gwCurve: new Box(gwCurveKP), gwCurveKP };
}

/** A message as it arrives on a capability subject. */
export interface Msg {
  subject: string;
  headers: Map<string, string>;
  data: Uint8Array;
}

/** What forward makes: an agent's envelope and the gateway's delivery of it. */
export interface Forward {
  w: World;
  a: Actor;
  target: string;
  plain: Uint8Array;
  /** The agent sealed its payload to the gateway. */
  sealed?: boolean;
  /** The consumer's box; absent: a plain target. */
  consumer?: Box;
  /** Signs the token instead of the world's gateway key. */
  signer?: KeyPair;
  /** The token's issuer (iss) instead of the signer's key: a signature under another key than the one named. */
  issuer?: string;
  edit?: (c: ClaimsToSign) => void;
}

/** forward builds the agent's envelope and its delivery as the gateway would. */
export function forward(f: Forward): Msg {
  const { w, a } = f;
  let payload: Payload;
  if (f.sealed) {
    payload = { sealed: b64url(a.box.seal(f.plain, w.gwCurve.publicKey)), from: a.xkey, to: w.gwCurve.publicKey };
  } else {
    payload = { plain: f.plain };
  }
  const body = buildEnvelope(
    { tenant: TENANT, audience: AUDIENCE, capability: "tool_call", target: f.target, idempotencyKey: "idem-1", payload },
    CLOCK,
  );
  const env = parseEnvelope(body);
  const doc: DeliveryDoc = { decision: "", signature: signEnvelope((m) => a.kp.sign(m), body), sealed: "", sealedFrom: "", envelope: body };
  let bound = env.payload.plain ?? new Uint8Array(0);
  if (f.consumer !== undefined) {
    bound = w.gwCurve.seal(f.plain, f.consumer.publicKey);
    doc.sealed = b64url(bound);
    doc.sealedFrom = w.gwCurve.publicKey;
  }
  const c: ClaimsToSign = {
    jti: "JTI" + digestHex(body).slice(0, 20).toUpperCase(),
    sub: a.pub,
    aud: f.target,
    iat: unix(CLOCK),
    exp: unix(CLOCK) + 60,
    tenant: TENANT,
    scope: "refund:draft",
    traceId: env.traceId,
    messageId: env.messageId,
    bodyDigest: digestHex(body),
    payloadDigest: digestHex(bound),
    policyIds: ["permit-refunds"],
    policyVersion: "v1",
    route: "allow",
  };
  f.edit?.(c);
  const signer = f.signer ?? w.gwSign;
  doc.decision = signBatch(signer, [wireClaims(f.issuer ?? signer.getPublicKey(), c)], false)[0]!;
  return {
    subject: `agentgw.cap.${TENANT}.${f.target}`,
    headers: new Map([["Agentgw-Agent", a.pub]]),
    data: formatDelivery(doc),
  };
}

/** The delivery document as an attacker could rewrite it: no checks. */
export interface DocFields {
  v: number;
  decision?: string;
  signature?: string;
  sealed?: string;
  sealed_from?: string;
  envelope?: unknown;
}

/** docOf decodes a delivery loosely, keeping the envelope's exact text. */
export function docOf(m: Msg): DocFields & { envelopeText: string } {
  const text = new TextDecoder().decode(m.data);
  const i = text.indexOf(`"envelope":`);
  const envelopeText = text.slice(i + `"envelope":`.length, -1);
  const d = JSON.parse(text.slice(0, i) + `"envelope":null}`) as DocFields;
  return { ...d, envelopeText };
}

/** editDoc rewrites the delivery in m (keeping the envelope's bytes unless edited). */
export function editDoc(m: Msg, mod: (d: DocFields & { envelopeText: string }) => void): Msg {
  const d = docOf(m);
  mod(d);
  const { envelopeText, ...rest } = d;
  delete rest.envelope;
  for (const k of ["decision", "signature", "sealed", "sealed_from"] as const) {
    if (rest[k] === "") delete rest[k];
  }
  const head = JSON.stringify(rest);
  return { ...m, data: bytes(`${head.slice(0, -1)},"envelope":${envelopeText}}`) };
}

/** issueCredential signs an agentgw credential as `agentgw creds issue` does. */
export function issueCredential(
  issuer: KeyPair,
  c: { sub: string; aud?: string; tenant?: string; scopes: string[]; xkey: string; service?: string; principal?: string },
  now = new Date(),
): string {
  const iat = unix(now);
  const claims = {
    aud: c.aud ?? AUDIENCE,
    exp: iat + 3600,
    jti: `JTI${iat}${Math.random().toString(36).slice(2, 10).toUpperCase()}`,
    iat,
    iss: issuer.getPublicKey(),
    name: "test agent",
    nbf: iat,
    sub: c.sub,
    nats: {
      ...(c.principal !== undefined ? { principal: c.principal } : {}),
      scopes: c.scopes,
      service: c.service ?? "test",
      tenant: c.tenant ?? TENANT,
      type: "agentgw-credential",
      version: 2,
      xkey: c.xkey,
    },
  };
  const head = `${b64url(bytes(`{"typ":"JWT","alg":"ed25519-nkey"}`))}.${b64url(bytes(JSON.stringify(claims)))}`;
  return `${head}.${b64url(issuer.sign(bytes(head)))}`;
}

/**
 * approvalRequest is the approval request the gateway publishes for the
 * vectors' held payment, held as held and made by agent, with over's
 * members in place of its own.
 */
export function approvalRequest(held: string, agent: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    held_message_id: held,
    trace_id: "8a3c60f7d188f8fa79d48a391a778fa6",
    tenant: TENANT,
    agent,
    service: "support-agent-runtime",
    capability: "tool_call",
    target: "payments.send",
    risk: "critical",
    policy_ids: ["base.high_risk_approval"],
    policy_version: "sha256:b51102883285d783156a13add3e2ac5036ab31ea946b6ac315c5d8b76c895162",
    body_digest: "sha256:076115a7df26e1d53f1533ef4d77d9b221f32486fe662b4a4deada26bd746401",
    payload_digest: "sha256:e29f7b91eb38b52aed983bb60015712e6f32cf8cf7477459f7540bd396d624ea",
    fields: { amount_cents: 990000, currency: "EUR" },
    requested_at: "2026-11-26T01:08:41Z",
    deadline: "2026-11-26T01:23:41Z",
    ...over,
  };
}

/** sec reads an RFC 3339 time of a test request as Unix seconds, rounded up. */
export function sec(t: unknown, fallback: number): number {
  return typeof t === "string" ? Math.ceil(new Date(t).getTime() / 1000) : fallback;
}

/**
 * approvalClaims are the claims of the decision token the gateway puts on
 * the approval request req's message (data, its body): route approval,
 * for its target, bound to data and the held envelope, expiring at the
 * deadline rounded up to the second.
 */
export function approvalClaims(req: Record<string, unknown>, data: Uint8Array): ClaimsToSign {
  const s = (k: string): string => (typeof req[k] === "string" ? (req[k] as string) : "");
  const iat = sec(req.requested_at, unix(CLOCK));
  return {
    jti: `JTI${digestHex(data).slice(0, 20).toUpperCase()}`,
    sub: s("agent"),
    aud: s("target"),
    iat,
    exp: Math.max(sec(req.deadline, iat + 1), iat + 1),
    tenant: s("tenant"),
    scope: "payments:send",
    traceId: s("trace_id"),
    messageId: s("held_message_id"),
    bodyDigest: s("body_digest").replace(/^sha256:/, ""),
    payloadDigest: digestHex(data),
    policyIds: Array.isArray(req.policy_ids) ? (req.policy_ids as string[]) : [],
    policyVersion: s("policy_version"),
    route: "approval",
  };
}
