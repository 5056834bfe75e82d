// Keys: nkeys public keys checked in their strict form, Ed25519
// verification that refuses malleable signatures, and the xkey box
// (curve keys of @nats-io/nkeys) with the gateway's low-order point check.
import { createPrivateKey, createPublicKey, diffieHellman, randomBytes, verify, type KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { fromCurveSeed, fromSeed, Prefix, type KeyPair } from "@nats-io/nkeys";
import { Codec } from "@nats-io/nkeys/lib/codec.js";
import { DeniedError } from "./errors.js";
import { utf8 } from "./internal/bytes.js";

export type { KeyPair } from "@nats-io/nkeys";

/** Roles of public nkeys, by their first character. */
export type KeyRole = "U" | "N" | "X" | "A";

const PREFIX: Record<KeyRole, Prefix> = {
  U: Prefix.User,
  N: Prefix.Server,
  X: Prefix.Curve,
  A: Prefix.Account,
};

const STRICT = /^[A-Z][A-D][A-Z2-7]{54}$/;

// Small-order Ed25519 encodings (libsodium's list, as nkeys has it): the
// sign bit is ignored, so these cover all eight points and their
// non-canonical aliases. The Go SDK's nkeys refuses them as keys.
const SMALL_ORDER: readonly Uint8Array[] = [
  new Uint8Array(32),
  Uint8Array.of(1, ...new Uint8Array(31)),
  Uint8Array.from([38, 232, 149, 143, 194, 178, 39, 176, 69, 195, 244, 137, 242, 239, 152, 240, 213, 223, 172, 5, 211, 198, 51, 57, 177, 56, 2, 136, 109, 83, 252, 5]),
  Uint8Array.from([199, 23, 106, 112, 61, 77, 216, 79, 186, 60, 11, 118, 13, 16, 103, 15, 42, 32, 83, 250, 44, 57, 204, 198, 78, 199, 253, 119, 146, 172, 3, 122]),
  Uint8Array.from([236, ...new Array<number>(30).fill(255), 127]),
  Uint8Array.from([237, ...new Array<number>(30).fill(255), 127]),
  Uint8Array.from([238, ...new Array<number>(30).fill(255), 127]),
];

function smallOrder(raw: Uint8Array): boolean {
  return SMALL_ORDER.some((bad) => (raw[31]! & 127) === bad[31] && raw.subarray(0, 31).every((b, i) => b === bad[i]));
}

/**
 * decodePublicKey returns the 32 raw bytes of an encoded public nkey of
 * the given role, or undefined. The strict form (the role letter, then
 * A–D, which carries the prefix byte's low bits and is A–D exactly when
 * the prefix is the role's, then 54 base32 characters) is checked before
 * the checksum: a base32 decoder may skip line breaks, and a key with one
 * in it is not a key. An Ed25519 key ('U', 'N', 'A') of small order is
 * refused, as the Go SDK refuses it.
 */
export function decodePublicKey(key: string, role: KeyRole): Uint8Array | undefined {
  if (typeof key !== "string" || key.length !== 56 || key[0] !== role || !STRICT.test(key)) {
    return undefined;
  }
  try {
    const raw = Codec.decode(PREFIX[role], utf8(key));
    if (raw.length !== 32 || (role !== "X" && smallOrder(raw))) {
      return undefined;
    }
    return raw;
  } catch {
    return undefined;
  }
}

/** isPublicKey reports whether key is an encoded public nkey of role. */
export function isPublicKey(key: string, role: KeyRole): boolean {
  return decodePublicKey(key, role) !== undefined;
}

const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");

/**
 * verifyEd25519 reports whether sig is raw's Ed25519 signature of msg
 * (RFC 8032, cofactorless, S < L required: signatures are not
 * malleable). It checks lengths first and never throws. It is node's
 * OpenSSL verification, which agrees with Go's crypto/ed25519 on every
 * Wycheproof vector; @nats-io/nkeys' verify accepts S + L and is not used
 * for anything this package decides on.
 */
export function verifyEd25519(raw: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  if (raw.length !== 32 || sig.length !== 64) {
    return false;
  }
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: "der", type: "spki" });
    return verify(null, msg, key, sig);
  } catch {
    return false;
  }
}

/** verifyByKey is verifyEd25519 with an encoded public nkey of role. */
export function verifyByKey(key: string, role: KeyRole, msg: Uint8Array, sig: Uint8Array): boolean {
  const raw = decodePublicKey(key, role);
  return raw !== undefined && verifyEd25519(raw, msg, sig);
}

/**
 * hideSeed keeps a key pair's secret out of its printed forms. nkeys.js
 * holds the seed (a curve pair: the raw private key) in a plain field,
 * which inspect, console.log and JSON.stringify would print; here every
 * field of the pair is made non-enumerable and its printed forms show
 * the public key only. Signing, sealing and opening are unchanged.
 */
export function hideSeed<T extends KeyPair>(kp: T): T {
  const pub = kp.getPublicKey();
  for (const field of Object.keys(kp)) {
    Object.defineProperty(kp, field, { enumerable: false });
  }
  const shown = `KeyPair{${pub}}`;
  Object.defineProperties(kp, {
    toString: { value: () => shown },
    toJSON: { value: () => ({ publicKey: pub }) },
    [inspect.custom]: { value: () => shown },
  });
  return kp;
}

/**
 * userKeyPair returns the key pair of a user ('SU…') seed, or throws a
 * TypeError that does not quote the seed. The pair prints its public
 * key only (hideSeed).
 */
export function userKeyPair(seed: string | Uint8Array): KeyPair {
  const s = typeof seed === "string" ? utf8(seed) : seed;
  let kp: KeyPair;
  try {
    kp = fromSeed(s);
  } catch {
    throw new TypeError("not an nkey seed");
  }
  if (!kp.getPublicKey().startsWith("U")) {
    kp.clear();
    throw new TypeError("not a user ('SU…') seed");
  }
  return hideSeed(kp);
}

/**
 * curveKeyPair returns the key pair of a curve ('SX…') seed. The pair
 * prints its public key only (hideSeed).
 */
export function curveKeyPair(seed: string | Uint8Array): KeyPair {
  const s = typeof seed === "string" ? utf8(seed) : seed;
  try {
    return hideSeed(fromCurveSeed(s));
  } catch {
    throw new TypeError("not a curve ('SX…') seed");
  }
}

// The xkey box layout, identical to nkeys' (Go and JavaScript):
// "xkv1" || 24-byte nonce || NaCl box (16-byte tag + ciphertext).
const XKEY_VERSION = utf8("xkv1");
const NONCE_LEN = 24;
const SEAL_OVERHEAD = XKEY_VERSION.length + NONCE_LEN + 16;
const PEER_CACHE = 1024;

/**
 * Box seals and opens payloads for one curve key, in the nkeys xkey
 * format (interoperable with nkeys' seal and open in Go and JavaScript).
 * Like the gateway it refuses a peer key whose shared point with this key
 * is all zero (a low-order point, which would make the box key public).
 * Its printed form shows only the public key.
 */
export class Box {
  readonly publicKey: string;
  readonly #kp: KeyPair;
  readonly #priv: KeyObject;
  readonly #checked = new Set<string>();

  /** Box wraps a curve ('X') key pair. Throws a TypeError for any other key. */
  constructor(kp: KeyPair) {
    let pub: string;
    let raw: Uint8Array;
    try {
      pub = kp.getPublicKey();
      raw = Codec.decode(Prefix.Private, kp.getPrivateKey());
    } catch {
      throw new TypeError("not a curve ('X') key pair");
    }
    if (!pub.startsWith("X") || raw.length !== 32) {
      throw new TypeError("not a curve ('X') key pair");
    }
    this.publicKey = pub;
    this.#kp = kp;
    this.#priv = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: "der", type: "pkcs8" });
    raw.fill(0);
  }

  /** peer checks a peer's public curve key; a bad one is a seal_mismatch. */
  #peer(key: string): void {
    if (this.#checked.has(key)) {
      return;
    }
    const raw = decodePublicKey(key, "X");
    if (raw === undefined) {
      throw new DeniedError("seal_mismatch", "peer is not a public curve ('X') nkey");
    }
    try {
      diffieHellman({
        privateKey: this.#priv,
        publicKey: createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: "der", type: "spki" }),
      }).fill(0);
    } catch {
      throw new DeniedError("seal_mismatch", `peer curve key ${key} is a low-order point`);
    }
    if (this.#checked.size >= PEER_CACHE) {
      this.#checked.clear();
    }
    this.#checked.add(key);
  }

  /**
   * seal encrypts plaintext to recipient (a public curve key) with a
   * random nonce from node:crypto (not the nacl module's own generator,
   * which any code in the process may replace with nacl.setPRNG: a
   * repeated nonce would give the box away). A malformed recipient is a
   * DeniedError seal_mismatch.
   */
  seal(plaintext: Uint8Array, recipient: string): Uint8Array {
    this.#peer(recipient);
    return this.#kp.seal(plaintext, recipient, new Uint8Array(randomBytes(24)));
  }

  /**
   * open decrypts sealed from sender (a public curve key). It throws a
   * DeniedError: seal_mismatch when sender is not a usable curve key,
   * seal_broken when sealed is not an xkv1 box from sender to this key.
   */
  open(sealed: Uint8Array, sender: string): Uint8Array {
    this.#peer(sender);
    if (sealed.length < SEAL_OVERHEAD || !XKEY_VERSION.every((b, i) => sealed[i] === b)) {
      throw new DeniedError("seal_broken", `sealed payload of ${sealed.length} bytes is not an xkv1 box`);
    }
    let out: Uint8Array | null;
    try {
      out = this.#kp.open(sealed, sender);
    } catch {
      out = null;
    }
    if (out === null) {
      throw new DeniedError("seal_broken", `sealed payload does not open from ${sender}`);
    }
    return out;
  }

  toString(): string {
    return `Box{${this.publicKey}}`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}
