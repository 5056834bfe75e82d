// The flat documents the gateway writes beside verbatim bytes (a
// delivery, a decision notice), read one way only: the twin of the Go
// delivery.Members.
import { Scanner, type ScanLimits } from "./json.js";

/** The members readMembers found; absent ones are missing from the maps. */
export interface Members {
  /** v's text as written ("" when absent). */
  version: string;
  /** String members (null reads as absent). */
  strings: Map<string, string>;
  /** Object members, their exact bytes: only delimited, their own rules are the caller's. */
  objects: Map<string, Uint8Array>;
}

/**
 * readMembers reads data as one JSON object whose member names are all
 * in names, each at most once (a name that differs in case is unknown):
 * v a number, the members named in objects objects, the others strings
 * or null, nothing after it. It throws an Error that never quotes data.
 */
export function readMembers(data: Uint8Array, names: ReadonlySet<string>, objects: ReadonlySet<string>, lim: ScanLimits): Members {
  const s = new Scanner(data, lim);
  s.checkDuplicates = false;
  s.controlNames = true; // delivery.Members delimits objects with encoding/json
  const out: Members = { version: "", strings: new Map(), objects: new Map() };
  if (s.peek() !== 0x7b) {
    throw new Error("not an object");
  }
  s.pos++;
  const seen = new Set<string>();
  if (s.peek() === 0x7d) {
    s.pos++;
  } else {
    for (;;) {
      if (s.peek() !== 0x22) {
        throw new Error("want a member name");
      }
      const name = s.str(256).value;
      if (!names.has(name) || seen.has(name)) {
        // Unknown and duplicate members are refused: the gateway writes
        // neither, and a document must be read one way only.
        throw new Error("unknown or duplicate member");
      }
      seen.add(name);
      s.expect(0x3a);
      const c = s.peek();
      if (name === "v") {
        if (c !== 0x2d && (c < 0x30 || c > 0x39)) {
          throw new Error("v is not a number");
        }
        out.version = s.number();
      } else if (objects.has(name)) {
        if (c !== 0x7b) {
          throw new Error(`${name} is not an object`);
        }
        const start = s.pos;
        s.value(1);
        out.objects.set(name, data.subarray(start, s.pos));
      } else if (c === 0x6e) {
        s.literal("null");
      } else if (c === 0x22) {
        out.strings.set(name, s.str(lim.maxString).value);
      } else {
        throw new Error(`${name} is not a string`);
      }
      const d = s.peek();
      if (d === 0x2c) {
        s.pos++;
      } else if (d === 0x7d) {
        s.pos++;
        break;
      } else {
        throw new Error("want ',' or '}'");
      }
    }
  }
  s.end();
  return out;
}
