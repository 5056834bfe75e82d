// Strict decoding of small JSON documents of a known shape (token claims,
// headers): the strict scanner first (valid UTF-8, no duplicate names, no
// trailing data), then a shape check that refuses unknown members and
// wrong types. Used for what is signed by someone else and must be read
// exactly one way.
import { Scanner } from "./json.js";

const LIMITS = { maxBytes: 16 << 10, maxDepth: 8, maxString: 16 << 10 };

/** A shape: the type of each known member. */
export type Shape = { [name: string]: "string" | "int" | "strings" | Shape };

/**
 * decodeStrict reads raw as one JSON object of shape and returns it, or
 * undefined if raw is not strict JSON, has a member outside shape or a
 * member of another type. Numbers must be integers written as such (no
 * fraction, no exponent: `1.0` and `1e3` are refused, as Go's decoder
 * refuses them for an integer). A member that is null, or absent, is
 * left out (the caller applies zero values).
 */
export function decodeStrict(raw: Uint8Array, shape: Shape): Record<string, unknown> | undefined {
  if (raw.length > LIMITS.maxBytes) {
    return undefined;
  }
  let v: unknown;
  try {
    const s = new Scanner(raw, LIMITS);
    s.integersOnly = true;
    if (s.peek() !== 0x7b) {
      return undefined;
    }
    s.value(0);
    s.end();
    v = JSON.parse(new TextDecoder().decode(raw));
  } catch {
    return undefined;
  }
  return conforms(v, shape) ? (v as Record<string, unknown>) : undefined;
}

function conforms(v: unknown, shape: Shape): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    return false;
  }
  for (const [k, val] of Object.entries(v)) {
    if (!Object.hasOwn(shape, k)) {
      return false;
    }
    if (val === null) {
      delete (v as Record<string, unknown>)[k];
      continue;
    }
    const t = shape[k]!;
    switch (t) {
      case "string":
        if (typeof val !== "string") return false;
        break;
      case "int":
        if (typeof val !== "number" || !Number.isSafeInteger(val)) return false;
        break;
      case "strings":
        if (!Array.isArray(val) || !val.every((x) => typeof x === "string")) return false;
        break;
      default:
        if (!conforms(val, t)) return false;
    }
  }
  return true;
}

/**
 * decodeLenient reads raw as strict JSON (no duplicate names, valid
 * UTF-8) and returns it, ignoring members it does not know; undefined if
 * it is not an object. For reading a field or two of claims that are
 * verified elsewhere.
 */
export function decodeLenient(raw: Uint8Array): Record<string, unknown> | undefined {
  try {
    const s = new Scanner(raw, LIMITS);
    if (s.peek() !== 0x7b) {
      return undefined;
    }
    s.value(0);
    s.end();
    return JSON.parse(new TextDecoder().decode(raw)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
