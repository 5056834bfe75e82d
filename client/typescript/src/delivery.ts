// The body of a message on a capability subject: the agent's envelope
// exactly as it signed it, with what the gateway adds to it.
//
//   {"v":1,"decision":"<token>","signature":"<base64url>",
//    "sealed":"<base64url>","sealed_from":"X…","envelope":{…}}
//
// "sealed" and "sealed_from" are absent for plain targets; "envelope" is
// the agent's bytes, verbatim (the decision token binds their digest).
import { utf8 } from "./internal/bytes.js";
import { readMembers, type Members } from "./internal/document.js";

/** DELIVERY_VERSION is the delivery format this package reads. */
export const DELIVERY_VERSION = 1;

/** A parsed delivery document. Nothing in it is verified yet. */
export interface DeliveryDoc {
  /** The gateway's decision token. */
  decision: string;
  /** The agent's base64url Ed25519 signature over the envelope; may be empty. */
  signature: string;
  /** The payload re-sealed to the consumer, base64url; empty for a plain target. */
  sealed: string;
  /** The gateway curve key that sealed it. */
  sealedFrom: string;
  /** The agent's envelope body, exactly as signed. */
  envelope: Uint8Array;
}

const NAMES = new Set(["v", "decision", "signature", "sealed", "sealed_from", "envelope"]);
const OBJECTS = new Set(["envelope"]);

/**
 * parseDelivery reads a delivery of at most max bytes. It checks the
 * shape only (that the token verifies and binds envelope and sealed is
 * verifyDelivery's job): strict JSON, no unknown or duplicate members, v
 * the literal 1, a non-empty decision string and an envelope object. It
 * throws an Error saying what is wrong, never quoting the document.
 */
export function parseDelivery(data: Uint8Array, max: number): DeliveryDoc {
  if (data.length > max) {
    throw new Error(`delivery: ${data.length} bytes, more than ${max}`);
  }
  // The envelope is only delimited here: its own rules (duplicates,
  // nesting) are checked when it is parsed, after the token binds its
  // digest, so a forged body is reported as what it is.
  let m: Members;
  try {
    // The envelope sits one level down: its deepest allowed nesting
    // (1024, the cap of Limits.maxDepth) is 1025 here.
    m = readMembers(data, NAMES, OBJECTS, { maxBytes: max, maxDepth: 1025, maxString: max });
  } catch {
    throw new Error("delivery: body is not a delivery document");
  }
  const version = m.version;
  const doc: DeliveryDoc = {
    decision: m.strings.get("decision") ?? "",
    signature: m.strings.get("signature") ?? "",
    sealed: m.strings.get("sealed") ?? "",
    sealedFrom: m.strings.get("sealed_from") ?? "",
    envelope: m.objects.get("envelope") ?? new Uint8Array(0),
  };
  if (version !== "1") {
    throw new Error(`delivery: version is not ${DELIVERY_VERSION}`);
  }
  if (doc.decision === "") {
    throw new Error("delivery: no decision token");
  }
  if (doc.envelope.length === 0) {
    throw new Error("delivery: no envelope object");
  }
  return doc;
}

const B64 = /^[A-Za-z0-9_-]*$/;
const TOKEN = /^[A-Za-z0-9_.-]+$/;

/**
 * formatDelivery writes d as the gateway does (members in this order:
 * v, decision, signature, sealed, sealed_from, envelope; empty ones
 * left out). Every string must be in its alphabet. For tests and tools
 * that need a delivery document; only a gateway makes real ones.
 */
export function formatDelivery(d: DeliveryDoc): Uint8Array {
  if (!TOKEN.test(d.decision) || !B64.test(d.sealed) || !B64.test(d.signature) || !B64.test(d.sealedFrom)) {
    throw new Error("delivery: a field is outside its alphabet");
  }
  if ((d.sealed === "") !== (d.sealedFrom === "")) {
    throw new Error("delivery: sealed and sealed_from go together");
  }
  let head = `{"v":1,"decision":"${d.decision}`;
  if (d.signature !== "") {
    head += `","signature":"${d.signature}`;
  }
  if (d.sealed !== "") {
    head += `","sealed":"${d.sealed}","sealed_from":"${d.sealedFrom}`;
  }
  head += `","envelope":`;
  const h = utf8(head);
  const out = new Uint8Array(h.length + d.envelope.length + 1);
  out.set(h);
  out.set(d.envelope, h.length);
  out[out.length - 1] = 0x7d;
  return out;
}
