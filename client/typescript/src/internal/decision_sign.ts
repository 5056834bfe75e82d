// Signing decision tokens, as the gateway does: for tests that need a
// token from a key the test controls (forged, expired, batched). Not part
// of the package's public API: only a gateway signs decisions.
import type { KeyPair } from "@nats-io/nkeys";
import { b64url, concat, utf8 } from "./bytes.js";
import { checkClaims, leafHash, MAX_BATCH, nodeHash, rootInput, TOKEN_HEADER_B64, type WireClaims } from "../decision.js";

/** The claims to sign; iss, act and the type are filled in. */
export interface ClaimsToSign {
  jti: string;
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  tenant: string;
  scope: string;
  approver?: string;
  traceId: string;
  messageId: string;
  bodyDigest: string;
  payloadDigest: string;
  policyIds?: string[];
  policyVersion?: string;
  route: string;
}

function str(s: string): string {
  if (!/^[\x20-\x7e]*$/.test(s) || s.includes('"') || s.includes("\\")) {
    throw new Error("decision: claim needs escaping");
  }
  return `"${s}"`;
}

/** encodeClaims writes the claims JSON byte for byte as the gateway does. */
export function encodeClaims(w: WireClaims): Uint8Array {
  const n = w.nats;
  let s = `{"aud":${str(w.aud)},"exp":${w.exp},"jti":${str(w.jti)},"iat":${w.iat},"iss":${str(w.iss)},"sub":${str(w.sub)}`;
  s += `,"nats":{"act":{"sub":${str(n.act.sub)},"via":${str(n.act.via)}`;
  if (n.act.approver) {
    s += `,"approver":${str(n.act.approver)}`;
  }
  s += `},"body_digest":${str(n.body_digest)},"message_id":${str(n.message_id)},"payload_digest":${str(n.payload_digest)}`;
  s += `,"policy_ids":[${n.policy_ids.map(str).join(",")}],"policy_version":${str(n.policy_version)}`;
  s += `,"route":${str(n.route)},"scope":${str(n.scope)},"tenant":${str(n.tenant)},"trace_id":${str(n.trace_id)}`;
  s += `,"type":${str(n.type)},"version":${n.version}}}`;
  return utf8(s);
}

/** wireClaims completes c for the gateway key iss. */
export function wireClaims(iss: string, c: ClaimsToSign): WireClaims {
  const act: WireClaims["nats"]["act"] = { sub: c.sub, via: iss };
  if (c.approver) {
    act.approver = c.approver;
  }
  return {
    aud: c.aud,
    exp: c.exp,
    jti: c.jti,
    iat: c.iat,
    iss,
    sub: c.sub,
    nats: {
      act,
      body_digest: c.bodyDigest,
      message_id: c.messageId,
      payload_digest: c.payloadDigest,
      policy_ids: c.policyIds ?? [],
      policy_version: c.policyVersion ?? "",
      route: c.route,
      scope: c.scope,
      tenant: c.tenant,
      trace_id: c.traceId,
      type: "agentgw-decision",
      version: 2,
    },
  };
}

/** buildTree returns the RFC 9162 root of leaves and appends each leaf's audit path to paths. */
function buildTree(leaves: Uint8Array[], off: number, paths: Uint8Array[][]): Uint8Array {
  const n = leaves.length;
  if (n === 1) {
    return leaves[0]!;
  }
  let k = 1;
  while (k << 1 < n) {
    k <<= 1;
  }
  const left = buildTree(leaves.slice(0, k), off, paths);
  const right = buildTree(leaves.slice(k), off + k, paths);
  for (let i = 0; i < k; i++) {
    paths[off + i]!.push(right);
  }
  for (let i = k; i < n; i++) {
    paths[off + i]!.push(left);
  }
  return nodeHash(left, right);
}

function appendUvarint(out: number[], v: number): void {
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/**
 * signBatch signs claims (already complete: see wireClaims) with one
 * signature by key, a server ('N') key pair, and returns their tokens in
 * order. check: false skips the claim rules, to make tokens that break
 * them.
 */
export function signBatch(key: KeyPair, claims: WireClaims[], check = true): string[] {
  if (claims.length === 0 || claims.length > MAX_BATCH) {
    throw new Error(`decision: batch of ${claims.length} tokens`);
  }
  const inputs = claims.map((w) => {
    if (check) {
      const p = checkClaims(w);
      if (p.length > 0) {
        throw new Error(`decision: invalid claims: ${p.join("; ")}`);
      }
    }
    return `${TOKEN_HEADER_B64}.${b64url(encodeClaims(w))}`;
  });
  const leaves = inputs.map((s) => leafHash(utf8(s)));
  const paths: Uint8Array[][] = leaves.map(() => []);
  const root = buildTree(leaves, 0, paths);
  const sig = b64url(key.sign(rootInput(leaves.length, root)));
  return inputs.map((s, i) => {
    const proof: number[] = [];
    appendUvarint(proof, i);
    appendUvarint(proof, leaves.length);
    return `${s}.${b64url(concat(Uint8Array.from(proof), ...paths[i]!))}.${sig}`;
  });
}
