// A strict JSON scanner over exact bytes, the TypeScript twin of the Go
// envelope scanner: RFC 8259 plus valid UTF-8 (no lone surrogate escapes),
// no control character in a member name and no duplicate member names at
// any depth (names that differ only under Unicode simple case folding are
// duplicates), bounded depth, string length and numbers, and nothing after
// the top-level value. Every check costs time linear in the input. Errors
// are DeniedError malformed_envelope with an offset, never the input's
// bytes.
import { DeniedError } from "../errors.js";
import { FOLD } from "./casefold.js";

/** Limits bound what the scanner reads; see Limits in envelope.ts. */
export interface ScanLimits {
  maxBytes: number;
  maxDepth: number;
  maxString: number;
}

// Number tokens are bounded so that a validator downstream that turns
// numbers into big rationals cannot be made to compute 10^1e9.
const MAX_NUMBER_LEN = 64;
const MAX_EXPONENT = 1000;

let foldMap: Map<number, number> | undefined;

function folds(): Map<number, number> {
  if (foldMap === undefined) {
    foldMap = new Map();
    for (const pair of FOLD.split(",")) {
      const i = pair.indexOf(":");
      foldMap.set(parseInt(pair.slice(0, i), 16), parseInt(pair.slice(i + 1), 16));
    }
  }
  return foldMap;
}

/**
 * foldName maps name to a canonical form such that foldName(a) ===
 * foldName(b) exactly when Go's bytes.EqualFold(a, b): each code point
 * becomes the smallest code point of its simple case folding orbit.
 */
export function foldName(name: string): string {
  const m = folds();
  let out = "";
  for (const ch of name) {
    const cp = ch.codePointAt(0)!;
    const f = m.get(cp);
    out += f === undefined ? ch : String.fromCodePoint(f);
  }
  return out;
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A decoded JSON string: its text and whether it held escapes. */
export interface Str {
  value: string;
  /** Length of the decoded value in UTF-8 bytes. */
  bytes: number;
}

/** Scanner reads strict JSON from one buffer. */
export class Scanner {
  pos = 0;
  /** checkDuplicates: refuse duplicate member names (on by default). */
  checkDuplicates = true;
  /**
   * foldNames: names that differ only under case folding are duplicates
   * (on by default); off, only names equal after unescaping are.
   */
  foldNames = true;
  /** integersOnly: refuse numbers with a fraction or an exponent. */
  integersOnly = false;
  /**
   * controlNames: accept member names holding a control character (off
   * by default: name refuses them, as the Go scanner does). Only readers
   * whose Go twin does not use that scanner turn it on.
   */
  controlNames = false;
  constructor(
    readonly data: Uint8Array,
    readonly lim: ScanLimits,
  ) {}

  fail(what: string): DeniedError {
    return new DeniedError("malformed_envelope", `offset ${this.pos}: ${what}`);
  }

  skipWS(): void {
    const d = this.data;
    while (this.pos < d.length) {
      const c = d[this.pos];
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
        this.pos++;
      } else {
        return;
      }
    }
  }

  /** peek returns the next non-space byte, or 0 at the end of input. */
  peek(): number {
    this.skipWS();
    return this.pos < this.data.length ? this.data[this.pos]! : 0;
  }

  /** expect consumes c (after whitespace) or fails. */
  expect(c: number): void {
    if (this.peek() !== c) {
      if (this.pos >= this.data.length) {
        throw this.fail(`unexpected end of input, want '${String.fromCharCode(c)}'`);
      }
      throw this.fail(`unexpected byte, want '${String.fromCharCode(c)}'`);
    }
    this.pos++;
  }

  /** end checks that only whitespace follows the top-level value. */
  end(): void {
    if (this.peek() !== 0 || this.pos !== this.data.length) {
      throw this.fail("data after the top-level value");
    }
  }

  /**
   * str reads the string whose opening quote is at pos. max bounds the
   * decoded length in bytes.
   */
  str(max: number): Str {
    const d = this.data;
    if (this.pos >= d.length || d[this.pos] !== 0x22) {
      throw this.fail("want a string");
    }
    const start = this.pos + 1;
    let i = start;
    let out: number[] | undefined; // decoded bytes once an escape was seen
    let n = 0; // decoded length so far
    while (i < d.length) {
      if (out !== undefined && n > max) {
        this.pos = i;
        throw this.fail(`string longer than ${max} bytes`);
      }
      const c = d[i]!;
      if (c === 0x22) {
        this.pos = i + 1;
        if (n > max) {
          throw this.fail(`string longer than ${max} bytes`);
        }
        const bytes = out === undefined ? d.subarray(start, i) : Uint8Array.from(out);
        return { value: decoder.decode(bytes), bytes: n };
      }
      if (c === 0x5c) {
        out ??= Array.from(d.subarray(start, i));
        if (i + 1 >= d.length) {
          this.pos = i;
          throw this.fail("unterminated escape");
        }
        const e = d[i + 1]!;
        i += 2;
        switch (e) {
          case 0x22:
          case 0x5c:
          case 0x2f:
            out.push(e);
            n++;
            break;
          case 0x62:
            out.push(0x08);
            n++;
            break;
          case 0x66:
            out.push(0x0c);
            n++;
            break;
          case 0x6e:
            out.push(0x0a);
            n++;
            break;
          case 0x72:
            out.push(0x0d);
            n++;
            break;
          case 0x74:
            out.push(0x09);
            n++;
            break;
          case 0x75: {
            let r = hex4(d, i);
            if (r < 0) {
              this.pos = i;
              throw this.fail("bad \\u escape");
            }
            i += 4;
            if (r >= 0xd800 && r <= 0xdfff) {
              // Only a high surrogate followed by a low one is a
              // character; anything else is invalid UTF-16, refused
              // like invalid UTF-8.
              if (r >= 0xdc00 || i + 6 > d.length || d[i] !== 0x5c || d[i + 1] !== 0x75) {
                this.pos = i;
                throw this.fail("unpaired surrogate escape");
              }
              const lo = hex4(d, i + 2);
              if (lo < 0xdc00 || lo > 0xdfff) {
                this.pos = i;
                throw this.fail("unpaired surrogate escape");
              }
              i += 6;
              r = 0x10000 + ((r - 0xd800) << 10) + (lo - 0xdc00);
            }
            n += appendRune(out, r);
            break;
          }
          default:
            this.pos = i - 1;
            throw this.fail("bad escape");
        }
        continue;
      }
      if (c < 0x20) {
        this.pos = i;
        throw this.fail("control character in string");
      }
      if (c < 0x80) {
        out?.push(c);
        n++;
        i++;
        continue;
      }
      const size = utf8Size(d, i);
      if (size === 0) {
        this.pos = i;
        throw this.fail("invalid UTF-8");
      }
      if (out !== undefined) {
        for (let k = 0; k < size; k++) {
          out.push(d[i + k]!);
        }
      }
      n += size;
      i += size;
    }
    this.pos = i;
    throw this.fail("unterminated string");
  }

  /**
   * name reads a member name whose opening quote is at pos, as str does,
   * and refuses one holding a control character (Unicode category Cc:
   * U+0000-U+001F, U+007F-U+009F), escaped or not, unless controlNames
   * is set. Values may carry them; a name may not: decoders downstream
   * end a key at U+0000 (cJSON) or drop or rewrite controls, so
   * {"tenant\u0000":"b"} would reach a consumer as tenant while checks
   * matching names exactly saw another member.
   */
  name(): Str {
    const at = this.pos;
    const name = this.str(this.lim.maxString);
    if (!this.controlNames && hasControl(name.value)) {
      this.pos = at;
      throw this.fail("control character in member name");
    }
    return name;
  }

  /** number reads a JSON number token and returns its text. */
  number(): string {
    const d = this.data;
    const start = this.pos;
    let i = start;
    const digits = (): number => {
      let k = 0;
      while (i < d.length && d[i]! >= 0x30 && d[i]! <= 0x39) {
        i++;
        k++;
      }
      return k;
    };
    if (i < d.length && d[i] === 0x2d) {
      i++;
    }
    if (i < d.length && d[i] === 0x30) {
      i++;
    } else if (digits() === 0) {
      this.pos = i;
      throw this.fail("bad number");
    }
    if (i < d.length && d[i] === 0x2e) {
      i++;
      if (digits() === 0) {
        this.pos = i;
        throw this.fail("bad number fraction");
      }
    }
    if (i < d.length && (d[i] === 0x65 || d[i] === 0x45)) {
      i++;
      if (i < d.length && (d[i] === 0x2b || d[i] === 0x2d)) {
        i++;
      }
      const expStart = i;
      if (digits() === 0) {
        this.pos = i;
        throw this.fail("bad number exponent");
      }
      let exp = 0;
      for (let k = expStart; k < i; k++) {
        exp = exp * 10 + (d[k]! - 0x30);
        if (exp > MAX_EXPONENT) {
          this.pos = start;
          throw this.fail(`number exponent beyond ${MAX_EXPONENT}`);
        }
      }
    }
    if (i - start > MAX_NUMBER_LEN) {
      this.pos = start;
      throw this.fail(`number longer than ${MAX_NUMBER_LEN} bytes`);
    }
    if (this.integersOnly && d.subarray(start, i).some((c) => c === 0x2e || c === 0x65 || c === 0x45)) {
      this.pos = start;
      throw this.fail("number is not an integer");
    }
    this.pos = i;
    return String.fromCharCode(...d.subarray(start, i));
  }

  literal(lit: string): void {
    const d = this.data;
    for (let k = 0; k < lit.length; k++) {
      if (d[this.pos + k] !== lit.charCodeAt(k)) {
        throw this.fail("bad literal");
      }
    }
    this.pos += lit.length;
  }

  /**
   * value reads and validates any JSON value. depth is the nesting level
   * of the container holding it (0 for a top-level value).
   */
  value(depth: number): void {
    const c = this.peek();
    switch (c) {
      case 0x7b:
        return this.object(depth + 1);
      case 0x5b:
        return this.array(depth + 1);
      case 0x22:
        this.str(this.lim.maxString);
        return;
      case 0x74:
        return this.literal("true");
      case 0x66:
        return this.literal("false");
      case 0x6e:
        return this.literal("null");
      case 0:
        throw this.fail("unexpected end of input");
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
          this.number();
          return;
        }
        throw this.fail("unexpected byte");
    }
  }

  array(depth: number): void {
    if (depth > this.lim.maxDepth) {
      throw this.fail(`nesting deeper than ${this.lim.maxDepth}`);
    }
    this.pos++; // '['
    if (this.peek() === 0x5d) {
      this.pos++;
      return;
    }
    for (;;) {
      this.value(depth);
      const c = this.peek();
      if (c === 0x2c) {
        this.pos++;
      } else if (c === 0x5d) {
        this.pos++;
        return;
      } else {
        throw this.fail("want ',' or ']' in array");
      }
    }
  }

  /** object reads a generic object, refusing duplicate names (under case folding unless foldNames is off). */
  object(depth: number): void {
    if (depth > this.lim.maxDepth) {
      throw this.fail(`nesting deeper than ${this.lim.maxDepth}`);
    }
    this.pos++; // '{'
    if (this.peek() === 0x7d) {
      this.pos++;
      return;
    }
    const names = new Set<string>();
    for (;;) {
      if (this.peek() !== 0x22) {
        throw this.fail("want a member name");
      }
      const at = this.pos;
      const name = this.name();
      const f = !this.checkDuplicates ? "" : this.foldNames ? foldName(name.value) : name.value;
      if (this.checkDuplicates && names.has(f)) {
        this.pos = at;
        throw this.fail("duplicate member name (names differing only in case are duplicates)");
      }
      names.add(f);
      this.expect(0x3a);
      this.value(depth);
      const c = this.peek();
      if (c === 0x2c) {
        this.pos++;
      } else if (c === 0x7d) {
        this.pos++;
        return;
      } else {
        throw this.fail("want ',' or '}' in object");
      }
    }
  }
}

/** hasControl reports whether s holds a code point of category Cc. */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      return true;
    }
  }
  return false;
}

function hex4(d: Uint8Array, i: number): number {
  if (i + 4 > d.length) {
    return -1;
  }
  let r = 0;
  for (let k = i; k < i + 4; k++) {
    const c = d[k]!;
    let v: number;
    if (c >= 0x30 && c <= 0x39) {
      v = c - 0x30;
    } else if (c >= 0x61 && c <= 0x66) {
      v = c - 0x61 + 10;
    } else if (c >= 0x41 && c <= 0x46) {
      v = c - 0x41 + 10;
    } else {
      return -1;
    }
    r = (r << 4) | v;
  }
  return r;
}

/** appendRune appends the UTF-8 of r to out and returns its length. */
function appendRune(out: number[], r: number): number {
  if (r < 0x80) {
    out.push(r);
    return 1;
  }
  if (r < 0x800) {
    out.push(0xc0 | (r >> 6), 0x80 | (r & 0x3f));
    return 2;
  }
  if (r < 0x10000) {
    out.push(0xe0 | (r >> 12), 0x80 | ((r >> 6) & 0x3f), 0x80 | (r & 0x3f));
    return 3;
  }
  out.push(0xf0 | (r >> 18), 0x80 | ((r >> 12) & 0x3f), 0x80 | ((r >> 6) & 0x3f), 0x80 | (r & 0x3f));
  return 4;
}

/**
 * utf8Size returns the length of the valid UTF-8 sequence at d[i] (a
 * byte >= 0x80), or 0 when it is invalid: the rules of Go's
 * utf8.DecodeRune (no overlong forms, no surrogates, nothing above
 * U+10FFFF).
 */
export function utf8Size(d: Uint8Array, i: number): number {
  const c = d[i]!;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => {
    const b = d[i + k];
    return b !== undefined && b >= lo && b <= hi;
  };
  if (c >= 0xc2 && c <= 0xdf) {
    return cont(1) ? 2 : 0;
  }
  if (c >= 0xe0 && c <= 0xef) {
    const lo = c === 0xe0 ? 0xa0 : 0x80;
    const hi = c === 0xed ? 0x9f : 0xbf;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const lo = c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/**
 * checkObject checks that raw is exactly one strict JSON object that will
 * sit at level `level` of a document (the envelope's plain payload is at
 * level 3).
 */
export function checkObject(raw: Uint8Array, lim: ScanLimits, level: number): void {
  const s = new Scanner(raw, lim);
  if (s.peek() !== 0x7b) {
    throw s.fail("not a JSON object");
  }
  s.value(level - 1);
  s.end();
}
