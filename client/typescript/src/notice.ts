// Decision notices: what the gateway tells an authenticated sender it
// decided for one of its envelopes (docs/wire.md, "Decision notices"):
// delivered (to which target), held for approval (the approval id and
// deadline) or denied (the reason code). A notice comes on the sender's
// own reply subject, agentgw.reply.<tenant>.<agent>, beside replies,
// marked `Agentgw-Notice: decision`, its bytes bound to the sender and to
// the envelope by a decision token of route "notice" that travels with it
// in the notice document, {"v":1,"decision":"<token>","notice":{…}}.
import { inspect } from "node:util";
import type { Msg } from "@nats-io/transport-node";
import { sendNamed, type Agent, type Receipt, type Request, type SendOptions } from "./agent.js";
import { ConfigError, InvalidRequestError, MessageDeniedError, NoDecisionError, VerificationError } from "./errors.js";
import { ROUTE_NOTICE, verifyDecision, type DecisionClaims } from "./decision.js";
import { dateOfNs, parseTimeNs } from "./envelope.js";
import { concat, digestHex, utf8 } from "./internal/bytes.js";
import { readMembers, type Members } from "./internal/document.js";
import { decodeStrict, type Shape } from "./internal/strict.js";
import type { ReasonCode } from "./reason.js";
import { reply as replySubject } from "./subjects.js";
import { headersOf } from "./internal/headers.js";
import { verifiedMessages } from "./internal/verified.js";
import { boundedSubscribe, type MsgSource } from "./internal/bounded.js";
import { openWaiter } from "./internal/waiter.js";
import { WAIT_SKEW_MS, waitSkewMs } from "./internal/skew.js";
import type { HeaderSource } from "./verify.js";

/** NOTICE_HEADER marks a decision notice on a reply subject; its value is NOTICE_KIND. */
export const NOTICE_HEADER = "Agentgw-Notice";
/** NOTICE_KIND is the value of NOTICE_HEADER on a decision notice. */
export const NOTICE_KIND = "decision";
/** MESSAGE_ID_HEADER names, on a notice, the envelope it reports on. */
export const MESSAGE_ID_HEADER = "Agentgw-Message-Id";
/** NOTICE_SCOPE is the scope of a notice's decision token. */
export const NOTICE_SCOPE = "notice";
/** MAX_NOTICE_SIZE bounds a notice, in bytes. */
export const MAX_NOTICE_SIZE = 4096;
/** NOTICE_DOC_VERSION is the notice document format this package reads. */
export const NOTICE_DOC_VERSION = 1;
/** MAX_NOTICE_DOC_SIZE bounds a notice document: the notice, its token (at most 16 KiB) and the members around them. */
export const MAX_NOTICE_DOC_SIZE = MAX_NOTICE_SIZE + 16 * 1024 + 64;
/** DEFAULT_NOTICE_SKEW_MS is the skew tolerated on a notice token's times when skewMs is absent or 0 (30 s). */
export const DEFAULT_NOTICE_SKEW_MS = WAIT_SKEW_MS;

/** What a notice reports: delivered, held for approval, or denied. */
export type NoticeRoute = "allow" | "approval" | "deny";
/** An approver's decision, on the notice of an approval answer. */
export type NoticeAnswer = "grant" | "deny";

/**
 * A Decision is what the gateway decided for one envelope an agent sent,
 * from its verified decision notice. It holds no secret and no policy:
 * the reason of a denial is its code only.
 */
export class Decision {
  /** The envelope the notice reports on. */
  readonly messageId: string;
  readonly route: NoticeRoute;
  /** allow: the capability target it was delivered to. */
  readonly target: string | undefined;
  /** approval: the id approvers answer (the held message id). */
  readonly approvalId: string | undefined;
  /**
   * approval: when the hold expires, to the millisecond, rounded down
   * (toward the past).
   */
  readonly deadline: Date | undefined;
  /**
   * approval: when the hold expires, to the nanosecond as the notice
   * gives it (the Go SDK's Decision.Deadline): Unix nanoseconds in
   * decimal (BigInt reads it). The gateway takes no answer after it.
   */
  readonly deadlineUnixNano: string | undefined;
  /**
   * deny: the reason code, one of the reason table's (a gateway newer
   * than this SDK may send a code the table does not list yet).
   */
  readonly reason: ReasonCode | undefined;
  /**
   * On the notice of an approval answer the gateway took: the held
   * request's message id, and the approver's decision. route, target and
   * reason are then the held request's outcome.
   */
  readonly answers: string | undefined;
  readonly answer: NoticeAnswer | undefined;
  /** The notice's verified decision token. */
  readonly claims: DecisionClaims;

  constructor(n: Notice, claims: DecisionClaims) {
    this.messageId = n.messageId;
    this.route = n.route;
    this.target = n.target;
    this.approvalId = n.approvalId;
    this.deadline = n.deadline;
    this.deadlineUnixNano = n.deadlineUnixNano;
    this.reason = n.reason;
    this.answers = n.answers;
    this.answer = n.answer;
    this.claims = claims;
  }

  toJSON(): object {
    return {
      message_id: this.messageId,
      route: this.route,
      ...(this.target ? { target: this.target } : {}),
      ...(this.approvalId ? { approval_id: this.approvalId } : {}),
      ...(this.deadline ? { deadline: this.deadline.toISOString() } : {}),
      ...(this.reason ? { reason: this.reason } : {}),
      ...(this.answers ? { answers: this.answers, answer: this.answer } : {}),
    };
  }

  toString(): string {
    return `Decision${JSON.stringify(this.toJSON())}`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** A notice as it travels, decoded (absent members undefined). */
export interface Notice {
  messageId: string;
  route: NoticeRoute;
  target?: string;
  approvalId?: string;
  deadline?: Date;
  deadlineUnixNano?: string;
  reason?: ReasonCode;
  answers?: string;
  answer?: NoticeAnswer;
}

const NOTICE_SHAPE: Shape = {
  message_id: "string",
  route: "string",
  target: "string",
  approval_id: "string",
  deadline: "string",
  reason: "string",
  answers: "string",
  answer: "string",
};

function malformed(detail: string): VerificationError {
  // The token bound these bytes: the gateway signed something that is
  // not a notice. The Go SDK reports that as an internal failure too.
  return new VerificationError("internal_error", `decision notice: ${detail}`);
}

/**
 * parseNotice decodes a notice's data strictly, as the gateway's notice
 * package does: at most MAX_NOTICE_SIZE bytes, one JSON object, no
 * unknown or duplicate members, valid UTF-8, nothing after it, and the
 * members its route requires (allow: target; approval: approval_id and
 * deadline, RFC 3339 UTC; deny: reason); answers and answer go together,
 * answer grant or deny. It throws a VerificationError internal_error.
 */
export function parseNotice(data: Uint8Array): Notice {
  if (data.length > MAX_NOTICE_SIZE) {
    throw malformed(`${data.length} bytes exceed ${MAX_NOTICE_SIZE}`);
  }
  const v = decodeStrict(data, NOTICE_SHAPE);
  if (v === undefined) {
    throw malformed("not strict JSON of the notice shape");
  }
  const s = (k: string): string => (typeof v[k] === "string" ? (v[k] as string) : "");
  const p: string[] = [];
  const messageId = s("message_id");
  if (messageId === "") {
    p.push("no message_id");
  }
  const route = s("route");
  // deadline, where present, is RFC 3339 UTC on every route (the Go
  // reader's rule too), not only where the route needs it.
  let deadline: bigint | undefined;
  const hasDeadline = typeof v["deadline"] === "string";
  if (hasDeadline) {
    deadline = parseTimeNs(s("deadline"));
    if (deadline === undefined) {
      p.push("deadline is not RFC 3339 UTC");
    }
  }
  switch (route) {
    case "allow":
      if (s("target") === "") {
        p.push("allow without target");
      }
      break;
    case "approval":
      if (s("approval_id") === "" || !hasDeadline) {
        p.push("approval without approval_id and deadline");
      }
      break;
    case "deny":
      if (s("reason") === "") {
        p.push("deny without reason");
      }
      break;
    default:
      p.push("route is none of allow, approval, deny");
  }
  const answers = s("answers");
  const answer = s("answer");
  if ((answers === "") !== (answer === "") || (answer !== "" && answer !== "grant" && answer !== "deny")) {
    p.push("answers and answer go together; answer is grant or deny");
  }
  if (p.length > 0) {
    throw malformed(p.join("; "));
  }
  const n: Notice = { messageId, route: route as NoticeRoute };
  if (s("target") !== "") n.target = s("target");
  if (s("approval_id") !== "") n.approvalId = s("approval_id");
  if (deadline !== undefined) {
    n.deadline = dateOfNs(deadline);
    n.deadlineUnixNano = deadline.toString();
  }
  if (s("reason") !== "") n.reason = s("reason") as ReasonCode;
  if (answers !== "") {
    n.answers = answers;
    n.answer = answer as NoticeAnswer;
  }
  return n;
}

/** A parsed notice document: the token and the notice's exact bytes, unverified. */
export interface NoticeDoc {
  decision: string;
  notice: Uint8Array;
}

const DOC_NAMES = new Set(["v", "decision", "notice"]);
const DOC_OBJECTS = new Set(["notice"]);

/**
 * parseNoticeDoc reads a notice document, {"v":1,"decision":"<token>",
 * "notice":{…}}, as the gateway's notice package does: at most
 * MAX_NOTICE_DOC_SIZE bytes, strict JSON, member names exactly v,
 * decision and notice, each once, v the literal 1, decision a non-empty
 * string, notice an object (kept as its exact bytes: the token binds
 * their digest). It throws an Error that never quotes the document.
 */
export function parseNoticeDoc(data: Uint8Array): NoticeDoc {
  if (data.length > MAX_NOTICE_DOC_SIZE) {
    throw new Error(`notice document: ${data.length} bytes, more than ${MAX_NOTICE_DOC_SIZE}`);
  }
  // The notice is only delimited here: its own rules are parseNotice's,
  // after the token binds its digest.
  let m: Members;
  try {
    m = readMembers(data, DOC_NAMES, DOC_OBJECTS, { maxBytes: MAX_NOTICE_DOC_SIZE, maxDepth: 64, maxString: MAX_NOTICE_DOC_SIZE });
  } catch {
    throw new Error("notice document: not a notice document");
  }
  const version = m.version;
  const notice = m.objects.get("notice");
  const doc: NoticeDoc = { decision: m.strings.get("decision") ?? "", notice: notice ?? new Uint8Array(0) };
  if (version !== "1") {
    throw new Error(`notice document: version is not ${NOTICE_DOC_VERSION}`);
  }
  if (doc.decision === "") {
    throw new Error("notice document: no decision token");
  }
  if (notice === undefined) {
    throw new Error("notice document: no notice object");
  }
  return doc;
}

/**
 * formatNoticeDoc writes the document of a token and a notice's bytes as
 * the gateway does. For tests and tools; only a gateway makes real ones.
 */
export function formatNoticeDoc(decision: string, notice: Uint8Array): Uint8Array {
  if (!/^[A-Za-z0-9_.-]+$/.test(decision) || notice[0] !== 0x7b || notice[notice.length - 1] !== 0x7d) {
    throw new Error("notice document: a token's characters and a notice object are needed");
  }
  return concat(utf8(`{"v":1,"decision":"${decision}","notice":`), notice, utf8("}"));
}

/** What verifyNotice needs of an agent: its key, its tenant and its clock. */
export interface NoticeReceiver {
  /** The agent's public user key: the notice token's subject and audience. */
  readonly publicKey: string;
  /** The agent's tenant (its credential's): the notice token's tenant. */
  readonly tenant: string;
  now(): Date;
}

/**
 * verifyNotice checks a message from the agent's reply subject as a
 * decision notice, in the Go SDK's order: its data is a notice document
 * (else decision_token_missing: no token), its decision token signed by
 * a trusted gateway, addressed to this agent, unexpired, then the
 * token's route (notice), subject (this agent) and payload digest (the
 * notice's exact bytes: decision_token_binding), then the notice's
 * strict form (internal_error), then its message_id against the token's
 * (decision_token_binding). It throws a VerificationError, or a
 * ConfigError for a negative or non-finite opt.skewMs. Whether the
 * message is marked as a notice (NOTICE_HEADER) and which envelope it is
 * awaited for are the caller's to check (DecisionWatch does both).
 */
export function verifyNotice(agent: NoticeReceiver, m: { data: Uint8Array; headers?: HeaderSource | undefined }, opt: Omit<WatchOptions, "onReject">): Decision {
  if (typeof agent.tenant !== "string" || agent.tenant === "") {
    // A receiver without a tenant: say so, rather than refuse every
    // notice as bound to another tenant (as verifyReply).
    throw new ConfigError("invalid config: the notice receiver has no tenant");
  }
  let doc: NoticeDoc;
  try {
    doc = parseNoticeDoc(m.data);
  } catch {
    throw new VerificationError("decision_token_missing", "not a decision notice document");
  }
  const claims = verifyDecision(doc.decision, {
    trustedGateways: opt.trustedGateways,
    audience: agent.publicKey,
    now: agent.now(),
    skewMs: waitSkewMs(opt.skewMs),
  });
  if (claims.route !== ROUTE_NOTICE || claims.subject !== agent.publicKey || claims.tenant !== agent.tenant || claims.payloadDigest !== digestHex(doc.notice)) {
    throw new VerificationError("decision_token_binding", "notice token does not bind these bytes to this agent of its tenant");
  }
  const n = parseNotice(doc.notice);
  if (n.messageId !== claims.messageId) {
    throw new VerificationError("decision_token_binding", "notice names another envelope than its token");
  }
  return new Decision(n, claims);
}

/**
 * isNotice reports whether a message on a reply subject is marked as a
 * decision notice: its Agentgw-Notice value is exactly "decision", read
 * as received (headersOf), so "decision " with a trailing space is not.
 */
export function isNotice(m: { headers?: HeaderSource | undefined }): boolean {
  return (headersOf(m)?.get(NOTICE_HEADER) ?? "") === NOTICE_KIND;
}

/** Options of a DecisionWatch. */
export interface WatchOptions {
  /** Gateway signing keys (N…) whose notice tokens are accepted. Required. */
  trustedGateways: readonly string[];
  /**
   * Skew tolerated on the token's iat and exp, in ms. Absent or 0: 30 s
   * (DEFAULT_NOTICE_SKEW_MS), as a zero WaitOptions.Skew is in the Go
   * SDK. Negative or not a finite number: ConfigError.
   */
  skewMs?: number;
  /** Called with each marked notice that does not verify (it is skipped). */
  onReject?: (err: VerificationError) => void;
}

/**
 * A DecisionWatch receives the decision notices on an agent's reply
 * subject. Open it before sending, so that no notice arrives unseen (a
 * notice may come before the PubAck); close it when done. One await at a
 * time: messages that are not the awaited envelope's verified notice are
 * skipped.
 */
export class DecisionWatch {
  readonly #agent: Agent;
  readonly #opt: WatchOptions;
  readonly #sub: MsgSource;
  readonly #it: AsyncIterator<Msg>;
  #pending: Promise<IteratorResult<Msg>> | undefined;

  /** The subscription is made here; ready() resolves once the server has it. */
  constructor(agent: Agent, opt: WatchOptions) {
    checkWatch(opt);
    this.#agent = agent;
    this.#opt = opt;
    this.#sub = boundedSubscribe(agent.connection, replySubject(agent.tenant, agent.publicKey));
    this.#it = this.#sub[Symbol.asyncIterator]();
  }

  /** ready resolves once the server has the subscription. */
  ready(): Promise<void> {
    return this.#agent.connection.flush();
  }

  /** close ends the subscription; a pending await rejects with NoDecisionError. */
  close(): void {
    this.#sub.unsubscribe();
  }

  /**
   * await waits, until signal aborts or the watch closes, for the
   * verified notice of the envelope messageId. It resolves with the
   * Decision when the envelope was delivered or held, and when it was an
   * approval answer the gateway took (answers set, whatever the held
   * request's outcome). It rejects with MessageDeniedError when the
   * envelope was denied, and NoDecisionError when no verified notice came.
   */
  async await(messageId: string, opts: { signal?: AbortSignal } = {}): Promise<Decision> {
    const next = async (signal: AbortSignal | undefined): Promise<Msg | undefined> => {
      const r = await this.#next(signal);
      return r.done ? undefined : r.value;
    };
    return awaitNotice(this.#agent, this.#opt, messageId, next, opts.signal);
  }

  /**
   * next is the subscription's next message, or the signal's reason. A
   * read the signal abandoned is kept for the next call, so that no
   * message is lost between awaits.
   */
  #next(signal: AbortSignal | undefined): Promise<IteratorResult<Msg>> {
    signal?.throwIfAborted();
    const p = (this.#pending ??= this.#it.next());
    // The read is done once a caller takes its result: one whose signal
    // aborted first leaves it, resolved or not, to the next call.
    const taken = (): void => {
      if (this.#pending === p) this.#pending = undefined;
    };
    if (signal === undefined) {
      return p.finally(taken);
    }
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(
        (v) => {
          if (signal.aborted) return; // left for the next call
          signal.removeEventListener("abort", onAbort);
          taken();
          resolve(v);
        },
        (e) => {
          signal.removeEventListener("abort", onAbort);
          taken();
          reject(e);
        },
      );
    });
  }
}

/**
 * checkWatch refuses options that trust no gateway for decision notices,
 * or whose skewMs is negative or not a finite number (ConfigError).
 */
function checkWatch(opt: WatchOptions): void {
  if (!opt?.trustedGateways || opt.trustedGateways.length === 0) {
    throw new ConfigError("no trusted gateway keys for decision notices");
  }
  waitSkewMs(opt.skewMs);
}

/**
 * awaitNotice reads messages with next until one is the verified notice
 * of the envelope messageId: DecisionWatch.await's loop, for a watch's
 * subscription and for sendAndDecide's waiter alike. next resolves with
 * undefined once no message will come (the signal aborted, the
 * subscription ended); that, and next's rejection, is NoDecisionError.
 * Marked notices of messageId that do not verify go to opt.onReject.
 */
async function awaitNotice(
  agent: Agent,
  opt: WatchOptions,
  messageId: string,
  next: (signal: AbortSignal | undefined) => Promise<Msg | undefined>,
  signal: AbortSignal | undefined,
): Promise<Decision> {
  for (;;) {
    const m = await next(signal).catch((err: unknown) => {
      throw new NoDecisionError(messageId, `no decision notice for ${messageId}`, { cause: err });
    });
    if (m === undefined) {
      throw new NoDecisionError(messageId, `no decision notice for ${messageId}`, { cause: signal?.reason });
    }
    if (!isNotice(m) || (headersOf(m)?.get(MESSAGE_ID_HEADER) ?? "") !== messageId) {
      continue;
    }
    let d: Decision;
    try {
      d = verifyNotice(agent, m, opt);
    } catch (err) {
      if (err instanceof VerificationError) {
        opt.onReject?.(err);
        continue; // not from a trusted gateway: not our notice
      }
      throw err;
    }
    if (d.messageId !== messageId) {
      continue;
    }
    if (d.route === "deny" && d.answers === undefined) {
      throw new MessageDeniedError(d);
    }
    return d;
  }
}

/**
 * sendAndDecide sends req and waits, until opt.signal aborts, for the
 * gateway's decision notice of it: delivered or held resolve with the
 * Decision; a denial rejects with MessageDeniedError (its reason code and
 * the Decision); no verified notice in time (or the connection closed)
 * rejects with NoDecisionError. Both carry the receipt. The agent needs
 * no curve key for this.
 *
 * The calls of one agent in flight (sendAndDecide and sendAndWait) share
 * one subscription to its reply subject, made before the first of them
 * publishes and ended when the last is done; each notice is handed to the
 * call of the envelope it names (its Agentgw-Message-Id), and to no
 * other. The call's waiter is registered before its envelope is
 * published, and follows a re-issue under a new message id. What it is
 * handed is checked as DecisionWatch.await checks it: a marked notice of
 * the envelope that does not verify goes to opt.onReject.
 */
export async function sendAndDecide(
  agent: Agent,
  req: Request,
  opt: WatchOptions & SendOptions,
): Promise<{ receipt: Receipt; decision: Decision }> {
  checkWatch(opt);
  if (req.noNotice === true) {
    throw new InvalidRequestError("invalid request: noNotice: sendAndDecide waits for the notice");
  }
  // Wait before sending: the notice cannot arrive unseen.
  const w = await openWaiter(agent);
  try {
    const receipt = await sendNamed(agent, req, opt.signal ? { signal: opt.signal } : {}, (id) => w.expect(id));
    try {
      return { receipt, decision: await awaitNotice(agent, opt, receipt.messageId, (signal) => w.next(signal), opt.signal) };
    } catch (err) {
      if (err instanceof NoDecisionError || err instanceof MessageDeniedError) {
        err.receipt = receipt;
      }
      throw err;
    }
  } finally {
    w.close();
  }
}

/**
 * decisions yields every verified decision notice to this agent (of any
 * of its envelopes) until the signal aborts or the loop ends. Replies on
 * the same subject are skipped; a marked notice that does not verify is
 * skipped and passed to onReject; a notice yielded lately (its token id
 * among the last 4096) is skipped, as the gateway re-emits one on a
 * redelivery.
 */
export function decisions(agent: Agent, opt: WatchOptions & { signal?: AbortSignal }): AsyncIterableIterator<Decision> {
  checkWatch(opt);
  const sub = boundedSubscribe(agent.connection, replySubject(agent.tenant, agent.publicKey));
  return verifiedMessages(sub, opt.signal, isNotice, (m) => verifyNotice(agent, m, opt), opt.onReject);
}
