// Sealing draws its nonce from node:crypto, not from the nacl module's
// generator, which any code in the process may replace.
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import assert from "node:assert/strict";
import { createCurve } from "@nats-io/nkeys";
// The generator the nkeys module seals with by default (its dependency).
import nacl from "tweetnacl";
import { Box } from "../src/keys.js";
import { bytes } from "./helpers.js";

test("Box.seal: a replaced nacl generator does not repeat nonces", () => {
  const a = new Box(createCurve());
  const b = new Box(createCurve());
  // A generator that always gives zeros, as a careless or hostile
  // module in the process could install.
  nacl.setPRNG((x: Uint8Array, n: number) => {
    for (let i = 0; i < n; i++) x[i] = 0;
  });
  try {
    const one = a.seal(bytes("one"), b.publicKey);
    const two = a.seal(bytes("two"), b.publicKey);
    // xkv1 box: a 4-byte header, then the 24-byte nonce.
    const nonce = (s: Uint8Array): string => Buffer.from(s.subarray(4, 28)).toString("hex");
    assert.notEqual(nonce(one), nonce(two), "two seals share a nonce");
    assert.notEqual(nonce(one), "00".repeat(24), "the nonce is the replaced generator's");
    assert.deepEqual(b.open(one, a.publicKey), bytes("one"));
  } finally {
    nacl.setPRNG((x: Uint8Array, n: number) => {
      x.set(randomBytes(n));
    });
  }
});
