// The lines of a seed file are taken less the spaces, tabs and CRs at
// their ends, and only those (Go's bytes.Trim(line, " \t\r")), in one
// pass over each end, however long the line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createCurve } from "@nats-io/nkeys";
import { parseSeedFile, trimLineEnds } from "../src/creds.js";
import { dec, xorshift32 } from "./helpers.js";

test("trimLineEnds takes spaces, tabs and CRs at the ends, and nothing else", () => {
  const cases: [string, string][] = [
    ["", ""],
    [" ", ""],
    [" \t\r \r\t", ""],
    ["x", "x"],
    ["  x", "x"],
    ["x  ", "x"],
    ["\t\rx\r\t", "x"],
    [" a b\tc\rd ", "a b\tc\rd"], // inside the line, kept
    ["\u00a0x\u00a0", "\u00a0x\u00a0"], // no-break spaces: String.prototype.trim would take them
    ["\ufeffx", "\ufeffx"], // a byte order mark
    ["\u0085x\u0085", "\u0085x\u0085"], // NEL: Go's strings.TrimSpace would take it
    ["\vx\f", "\vx\f"],
    [" \u2028x\u3000 ", "\u2028x\u3000"],
  ];
  for (const [line, want] of cases) {
    assert.equal(trimLineEnds(line), want, JSON.stringify(line));
  }
});

test("trimLineEnds agrees with the expression /^[ \\t\\r]+|[ \\t\\r]+$/g on short lines", () => {
  // The expression serves only as the reference on short lines: V8 takes
  // time quadratic in a long run of spaces inside a line on it.
  const reference = /^[ \t\r]+|[ \t\r]+$/g;
  const alphabet = [" ", " ", "\t", "\r", "x", "\u00a0", "\ufeff", "\v"];
  const next = xorshift32(0x2545f491);
  for (let i = 0; i < 20000; i++) {
    let line = "";
    for (let j = next() % 12; j > 0; j--) {
      line += alphabet[next() % alphabet.length];
    }
    assert.equal(trimLineEnds(line), line.replace(reference, ""), JSON.stringify(line));
  }
});

test("a seed line with a million spaces around it and a line of a million spaces inside are read", () => {
  const ck = createCurve();
  const seed = dec.decode(ck.getSeed());
  const run = " \t".repeat(500_000);
  const text = `# ${run}comment${run}x\n${run}\r${seed}${run}\r\n${"x" + " ".repeat(1_000_000) + "x"}\n`;
  assert.equal(parseSeedFile(text, "curve").getPublicKey(), ck.getPublicKey());
  const inner = `S${" ".repeat(1_000_000)}x`;
  assert.equal(trimLineEnds(` ${inner}\r`), inner);
  assert.throws(() => parseSeedFile(`${inner}\n`, "curve"), /not a SX seed/);
});
