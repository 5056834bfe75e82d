import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../src/errors.js";
import { decoratedBlocks, parseCreds, parseSeedFile } from "../src/creds.js";
import { xorshift32 } from "./helpers.js";

// jwt/v2's expression (gateway/identity's credsBlock). V8 backtracks on
// it, so it serves here only as the reference on short texts.
const REFERENCE = /\s*(?:(?:-{3,}[^\n]*-{3,}\r?\n)([\w\-.=]+)(?:\r?\n-{3,}[^\n]*-{3,}(?:\r?\n|$)))/g;

test("decoratedBlocks finds what jwt/v2's expression finds", () => {
  // A fixed pseudo-random walk over the characters that matter.
  const alphabet = ["-", "-", "-", "a", "=", "\r", "\n", "\n", " ", "x"];
  const next = xorshift32(0x2545f491);
  for (let i = 0; i < 20000; i++) {
    let text = "";
    const len = next() % 40;
    for (let j = 0; j < len; j++) {
      text += alphabet[next() % alphabet.length];
    }
    const want = [...text.matchAll(REFERENCE)].map((m) => m[1]);
    assert.deepEqual([...decoratedBlocks(text)], want, JSON.stringify(text));
  }
  for (const text of ["------\nv\n------", "x ------\r\nv\r\n------\r\n", "------\nv\n------\r", "-----\nv\n------\n", "------\nv w\n------\n"]) {
    assert.deepEqual([...decoratedBlocks(text)], [...text.matchAll(REFERENCE)].map((m) => m[1]), JSON.stringify(text));
  }
});

test("a file of dashes is refused in time linear in its size", () => {
  // jwt/v2's expression as a JavaScript RegExp took minutes on 800 dashes.
  const dashes = "-".repeat(100_000);
  for (const text of [dashes, `${dashes}\n${dashes}\n`, `${dashes}\nvalue\n${dashes}x\n`]) {
    assert.throws(() => parseCreds(text), ConfigError);
    assert.throws(() => parseSeedFile(text, "curve"), ConfigError);
    assert.throws(() => parseSeedFile(text, "user"), ConfigError);
  }
});
