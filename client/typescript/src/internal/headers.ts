// Header values exactly as received (docs/wire.md, "Headers"). nats.js
// decodes a header block by trimming every value with
// String.prototype.trim (spaces, tabs, no-break spaces, U+FEFF, …) and
// splitting lines on CR LF only; Go's nats.go, which the Go SDK reads
// headers with, removes only the spaces and tabs after the colon and
// splits lines on LF. So that both SDKs take the same value from the same
// bytes, the SDK reads the raw header block of a nats.js message itself,
// by nats.go's rules: a value with trailing white space is another value.
import type { HeaderSource } from "../verify.js";
import { utf8Size } from "./json.js";

// Values and names are UTF-8 (invalid bytes read as U+FFFD, which never
// equals a value the SDK compares with); a leading U+FEFF is kept.
const text = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

const NATS_1_0 = [0x4e, 0x41, 0x54, 0x53, 0x2f, 0x31, 0x2e, 0x30]; // "NATS/1.0"

/** A header block read by nats.go's rules: a name's first value. */
class HeaderBlock implements HeaderSource {
  readonly #first = new Map<string, string>();

  add(name: string, value: string): void {
    if (!this.#first.has(name)) {
      this.#first.set(name, value);
    }
  }

  get(name: string): string | undefined {
    return this.#first.get(name);
  }
}

/** EMPTY is what a message without headers, or with a block nats.go cannot decode, reads as. */
const EMPTY: HeaderSource = { get: () => undefined };

/**
 * parseHeaderBlock reads a NATS header block (the bytes before a
 * message's data) as nats.go's DecodeHeadersMsg does: lines end at LF,
 * less one CR before it; the first line starts with "NATS/1.0"; each
 * further line up to an empty one is a name, a colon and a value, the
 * name exactly as written (an empty one skips the line), the value less
 * the spaces and tabs after the colon and nothing else; a line without a
 * colon, or no empty line, and the whole block reads as no headers. A
 * name's first value is its value.
 */
export function parseHeaderBlock(raw: Uint8Array): HeaderSource {
  let pos = 0;
  const line = (): Uint8Array | undefined => {
    const i = raw.indexOf(0x0a, pos);
    if (i < 0) {
      return undefined;
    }
    let end = i;
    if (end > pos && raw[end - 1] === 0x0d) {
      end--;
    }
    const l = raw.subarray(pos, end);
    pos = i + 1;
    return l;
  };
  const first = line();
  if (first === undefined || first.length < NATS_1_0.length || NATS_1_0.some((c, i) => first[i] !== c)) {
    return EMPTY;
  }
  const h = new HeaderBlock();
  for (;;) {
    const kv = line();
    if (kv === undefined) {
      return EMPTY;
    }
    if (kv.length === 0) {
      break;
    }
    const colon = kv.indexOf(0x3a);
    if (colon < 0) {
      return EMPTY;
    }
    if (colon === 0) {
      continue;
    }
    let v = colon + 1;
    while (v < kv.length && (kv[v] === 0x20 || kv[v] === 0x09)) {
      v++;
    }
    h.add(text.decode(kv.subarray(0, colon)), text.decode(kv.subarray(v)));
  }
  // An inline status ("NATS/1.0 503"), as nats.go adds it: after a space
  // or tab only ("NATS/1.0503" and "NATS/1.0XYZ" are no headers).
  if (first.length > NATS_1_0.length) {
    if (first[NATS_1_0.length] !== 0x20 && first[NATS_1_0.length] !== 0x09) {
      return EMPTY;
    }
    const status = trimSpace(first.subarray(NATS_1_0.length));
    if (status.length < 3) {
      return EMPTY;
    }
    h.add("Status", text.decode(status.subarray(0, 3)));
    const description = trimSpace(status.subarray(3));
    if (description.length > 0) {
      h.add("Description", text.decode(description));
    }
  }
  return h;
}

// Go's unicode.IsSpace above ASCII.
const SPACES = new Set([0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);

function isSpace(cp: number): boolean {
  return cp === 0x20 || (cp >= 0x09 && cp <= 0x0d) || SPACES.has(cp);
}

/** runeAt returns the code point and length of the UTF-8 sequence at b[i], or -1 and 1 for an invalid byte (Go's RuneError). */
function runeAt(b: Uint8Array, i: number): [number, number] {
  const c = b[i]!;
  if (c < 0x80) {
    return [c, 1];
  }
  const n = utf8Size(b, i);
  if (n === 0) {
    return [-1, 1];
  }
  return [text.decode(b.subarray(i, i + n)).codePointAt(0)!, n];
}

/** trimSpace is Go's bytes.TrimSpace: leading and trailing Unicode white space off. */
function trimSpace(b: Uint8Array): Uint8Array {
  let start = 0;
  while (start < b.length) {
    const [cp, n] = runeAt(b, start);
    if (!isSpace(cp)) {
      break;
    }
    start += n;
  }
  let end = b.length;
  while (end > start) {
    // The last rune: back over continuation bytes to its first byte.
    let i = end - 1;
    while (i > start && end - i < 4 && (b[i]! & 0xc0) === 0x80) {
      i--;
    }
    let [cp, n] = runeAt(b, i);
    if (i + n !== end) {
      [cp, n] = [-1, 1]; // not a whole sequence: the last byte alone
    }
    if (!isSpace(cp)) {
      break;
    }
    end -= n;
  }
  return b.subarray(start, end);
}

interface CoreMsg {
  _msg?: { hdr?: unknown };
  _rdata?: unknown;
}

/**
 * rawHeaders returns the header block of a nats.js message (a Msg, or
 * the Msg inside a JsMsg), null when it has no headers, and undefined
 * when m is not a nats.js message.
 */
function rawHeaders(m: unknown): Uint8Array | null | undefined {
  if (typeof m !== "object" || m === null) {
    return undefined;
  }
  const inner = (m as { msg?: unknown }).msg;
  const c = (typeof inner === "object" && inner !== null && "_msg" in inner ? inner : m) as CoreMsg;
  const hdr = c._msg?.hdr;
  if (typeof hdr !== "number") {
    return undefined;
  }
  if (hdr <= 0) {
    return null;
  }
  return c._rdata instanceof Uint8Array ? c._rdata.subarray(0, hdr) : undefined;
}

/**
 * headersOf returns the headers of m to read Agentgw-* values from. For a
 * nats.js message (Msg or JsMsg) it reads the header block as received,
 * by nats.go's rules (parseHeaderBlock), not nats.js's trimmed MsgHdrs;
 * for anything else (an object carrying a Map of exact values) it
 * returns m.headers.
 */
export function headersOf(m: { headers?: HeaderSource | undefined } | undefined): HeaderSource | undefined {
  const raw = rawHeaders(m);
  if (raw === undefined) {
    return m?.headers;
  }
  return raw === null ? undefined : parseHeaderBlock(raw);
}
