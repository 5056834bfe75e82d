// Byte helpers shared by the wire code. Nothing here is exported from the
// package.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** utf8 encodes s. */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** fromUtf8 decodes b, throwing a TypeError on invalid UTF-8. */
export function fromUtf8(b: Uint8Array): string {
  return decoder.decode(b);
}

/** b64url encodes b as base64url without padding. */
export function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/**
 * fromB64url decodes canonical base64url without padding: only the
 * alphabet, a possible length, and no stray bits (the encoding of the
 * result is s again), so one byte string has exactly one encoding. It
 * returns undefined for anything else. Node's own decoder skips unknown
 * characters and ignores stray bits; this one does not.
 */
export function fromB64url(s: string): Uint8Array | undefined {
  if (s.length % 4 === 1 || !B64URL.test(s)) {
    return undefined;
  }
  const b = Buffer.from(s, "base64url");
  if (b.toString("base64url") !== s) {
    return undefined;
  }
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** hex returns the lowercase hex of b. */
export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** sha256 returns the SHA-256 of the parts, in order. */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) {
    h.update(p);
  }
  return new Uint8Array(h.digest());
}

/** digestHex returns the lowercase hex SHA-256 of b. */
export function digestHex(b: Uint8Array): string {
  return hex(sha256(b));
}

/** concat returns the parts joined in a new array. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) {
    n += p.length;
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** random returns n bytes from the operating system's CSPRNG. */
export function random(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

/** equalBytes compares a and b in time independent of where they differ. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** equalString compares two ASCII strings in constant time for equal lengths. */
export function equalString(a: string, b: string): boolean {
  return equalBytes(utf8(a), utf8(b));
}
