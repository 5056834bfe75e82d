// The agentgw subject vocabulary. Every function that builds or parses a
// subject throws a DeniedError invalid_subject for a token outside its
// alphabet, so a valid tenant or target is always routable and no
// wildcard, space or '$' reaches a subject.
import { DeniedError } from "./errors.js";
import { validTarget, validToken } from "./envelope.js";
import { isPublicKey } from "./keys.js";

/** ROOT is the first token of every agentgw subject. */
export const ROOT = "agentgw";

/** Stream names the gateway publishes to; the SDK only reads them. */
export const STREAM_CAPABILITY = "AGENTGW_CAP";
export const STREAM_APPROVAL = "AGENTGW_APPROVAL";
export const STREAM_DENIED = "AGENTGW_DENIED";
export const STREAM_REPLY = "AGENTGW_REPLY";

const MAX_SUBJECT = 512;

/** validAgent reports whether s is a public user ('U') nkey in its strict form. */
export function validAgent(s: string): boolean {
  return isPublicKey(s, "U");
}

function invalid(detail: string): DeniedError {
  return new DeniedError("invalid_subject", detail);
}

function show(s: string): string {
  return JSON.stringify(String(s).slice(0, 72));
}

function checkTenant(tenant: string): void {
  if (!validToken(tenant)) {
    throw invalid(`tenant ${show(tenant)} is not [a-z0-9_-]{1,64}`);
  }
}

function checkAgent(agent: string): void {
  if (!validAgent(agent)) {
    throw invalid(`agent ${show(agent)} is not an nkey user public key`);
  }
}

function checkTarget(target: string): void {
  if (!validTarget(target)) {
    throw invalid(`target ${show(target)} is not dotted [a-z0-9_-]{1,64} parts of at most 255 bytes`);
  }
}

/** ingress returns agentgw.in.<tenant>.<agent>, where agents publish. */
export function ingress(tenant: string, agent: string): string {
  checkTenant(tenant);
  checkAgent(agent);
  return `${ROOT}.in.${tenant}.${agent}`;
}

/** capability returns agentgw.cap.<tenant>.<target>, where the gateway delivers an allowed request. */
export function capability(tenant: string, target: string): string {
  checkTenant(tenant);
  checkTarget(target);
  return `${ROOT}.cap.${tenant}.${target}`;
}

/** approval returns agentgw.approval.<tenant>.<target>, where held requests wait for an approver. */
export function approval(tenant: string, target: string): string {
  checkTenant(tenant);
  checkTarget(target);
  return `${ROOT}.approval.${tenant}.${target}`;
}

/** reply returns agentgw.reply.<tenant>.<agent>, where responses to an agent's requests arrive. */
export function reply(tenant: string, agent: string): string {
  checkTenant(tenant);
  checkAgent(agent);
  return `${ROOT}.reply.${tenant}.${agent}`;
}

function parseTenantTarget(kind: string, subj: string): { tenant: string; target: string } {
  if (typeof subj !== "string" || subj.length > MAX_SUBJECT) {
    throw invalid(`subject is ${String(subj).length} bytes; limit ${MAX_SUBJECT}`);
  }
  const prefix = `${ROOT}.${kind}.`;
  if (!subj.startsWith(prefix)) {
    throw invalid(`subject ${show(subj)} is not under ${prefix}*`);
  }
  const n = subj.split(".").length;
  if (n < 4) {
    throw invalid(`subject ${show(subj)} has ${n} tokens`);
  }
  const rest = subj.slice(prefix.length);
  const dot = rest.indexOf(".");
  const tenant = rest.slice(0, dot);
  const target = rest.slice(dot + 1);
  checkTenant(tenant);
  checkTarget(target);
  return { tenant, target };
}

/** parseCapability is the inverse of capability. */
export function parseCapability(subj: string): { tenant: string; target: string } {
  return parseTenantTarget("cap", subj);
}

/** parseApproval is the inverse of approval. */
export function parseApproval(subj: string): { tenant: string; target: string } {
  return parseTenantTarget("approval", subj);
}

/**
 * TENANT_API_PREFIX is the JetStream API prefix of tenant users in the
 * least-privilege layout (the server of `agentgw run` and deploy/): a
 * tenant account has no JetStream of its own and imports the consumer API
 * subjects its users may call under this prefix.
 */
export const TENANT_API_PREFIX = "agentgw.js";

/**
 * OPERATOR_API_PREFIX is the JetStream API prefix of operators in the
 * least-privilege layout: their own account, OPS, has no JetStream and
 * imports from the gateway's account only the reads of the denied and
 * audit streams (stream info, message get, direct get) under this prefix,
 * the same one tenant accounts use.
 */
export const OPERATOR_API_PREFIX = TENANT_API_PREFIX;

/**
 * CONSUMER_NAME_SEP separates the tenant from the target in a capability
 * consumer name and stands for each dot of the target. It is in neither
 * the tenant nor the target token alphabet ([a-z0-9_-]), and nats-server
 * accepts it in consumer names and subjects.
 */
export const CONSUMER_NAME_SEP = "~";

/**
 * capabilityConsumerName is the name of the pull consumer an
 * administrator pre-creates for one tenant's target:
 * "<tenant>~<target with every . as ~>", e.g.
 * "tenant_a~refunds~draft_refund", as the Go SDK's
 * CapabilityConsumerName. The first "~" ends the tenant and every later
 * one is a dot of the target, so two (tenant, target) pairs never share a
 * name: neither two targets of one tenant (refunds.issue, refunds_issue)
 * nor two tenants (a with b-c, a-b with c).
 */
export function capabilityConsumerName(tenant: string, target: string): string {
  return `${tenant}${CONSUMER_NAME_SEP}${target.replaceAll(".", CONSUMER_NAME_SEP)}`;
}

/**
 * approvalConsumerName is the pre-created approval queue of a tenant:
 * "<tenant>-approvals", the tenant's only consumer of the approval stream.
 */
export function approvalConsumerName(tenant: string): string {
  return `${tenant}-approvals`;
}
