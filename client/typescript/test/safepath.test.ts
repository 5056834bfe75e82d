import { test } from "node:test";
import assert from "node:assert/strict";
import { createCurve, createUser } from "@nats-io/nkeys";
import { ConfigError } from "../src/errors.js";
import { readCreds, readCurveSeed, readUserSeed, safePath, userConnectOptions } from "../src/creds.js";

// A seed or a JWT pasted where its file's path belongs: the read fails,
// and its error names the path without the secret (the Go SDK's
// identity.SafeText).
test("a secret pasted as a path is not quoted back", async () => {
  const seed = new TextDecoder().decode(createUser().getSeed());
  const curve = new TextDecoder().decode(createCurve().getSeed());
  const jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJBQkMxMjNkZWY0NTZHSEk3ODkifQ.c2lnbmF0dXJlMTIzNDU2Nzg5MGFiY2RlZkFCQ0RFRg";
  const reads: [string, () => Promise<unknown>][] = [
    ["readCreds(seed)", () => readCreds(seed)],
    ["readCreds(jwt)", () => readCreds(jwt)],
    ["readUserSeed", () => readUserSeed(seed)],
    ["readCurveSeed", () => readCurveSeed(curve)],
    ["userConnectOptions", () => userConnectOptions(seed)],
  ];
  for (const [name, read] of reads) {
    await assert.rejects(read(), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `${name}: ${String(err)}`);
      const msg = (err as Error).message;
      for (const secret of [seed, curve, jwt.split(".")[0]!, jwt.split(".")[1]!]) {
        assert.ok(!msg.includes(secret), `${name} quotes the secret: ${msg}`);
      }
      assert.match(msg, /characters\)/, name);
      return true;
    });
  }
  // Public keys and hex ids are kept.
  const pub = createUser().getPublicKey();
  assert.equal(safePath(`/keys/${pub}.creds`), `/keys/${pub}.creds`);
  assert.equal(safePath("/data/9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41.seed"), "/data/9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41.seed");
});
