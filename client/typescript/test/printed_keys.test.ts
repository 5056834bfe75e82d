import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { createAccount, createCurve, createUser } from "@nats-io/nkeys";
import { b64url, fromB64url, utf8 } from "../src/internal/bytes.js";
import { curveKeyPair, userKeyPair } from "../src/keys.js";
import { parseCreds, readCreds, readCurveSeed, readUserSeed } from "../src/creds.js";

// Every printed form a program could log: inspect (console.log), string
// conversion and JSON, of the object alone and inside a config literal.
function printed(v: unknown): string[] {
  const inConfig = { tenant: "acme", key: v, nested: { v } };
  return [
    inspect(v, { depth: 8, showHidden: false, maxArrayLength: 1000 }),
    inspect(inConfig, { depth: 8, maxArrayLength: 1000 }),
    String(v),
    `${v}`,
    JSON.stringify(v),
    JSON.stringify(inConfig),
  ];
}

function assertHidden(name: string, v: unknown, secrets: string[]): void {
  for (const out of printed(v)) {
    for (const s of secrets) {
      assert.ok(!out.includes(s), `${name} prints a secret: ${out.slice(0, 200)}`);
    }
  }
}

// The raw bytes of a key pair's seed as inspect and JSON would spell
// them: a run of the first bytes, comma separated, and JSON's
// index-keyed form.
function byteForms(b: Uint8Array): string[] {
  const head = Array.from(b.subarray(0, 8));
  return [head.join(", "), head.join(","), `"0":${head[0]},"1":${head[1]}`];
}

function credential(sub: string): string {
  const account = createAccount();
  const head = b64url(utf8(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" })));
  const body = b64url(utf8(JSON.stringify({ jti: "CRED7TESTJTI", iss: account.getPublicKey(), sub, aud: "agentgw", nats: { type: "agentgw-credential", tenant: "acme" } })));
  const sig = b64url(account.sign(utf8(`${head}.${body}`)));
  return `${head}.${body}.${sig}`;
}

test("key pairs and credentials the SDK reads print public keys only", async () => {
  const user = createUser();
  const curve = createCurve();
  const userSeed = new TextDecoder().decode(user.getSeed());
  const curveSeed = new TextDecoder().decode(curve.getSeed());
  const jwt = credential(user.getPublicKey());
  const [jwtHead, jwtBody, jwtSig] = jwt.split(".") as [string, string, string];
  const secrets = [userSeed, curveSeed, jwtBody, jwtSig, ...byteForms(user.getSeed()), ...byteForms((curve as unknown as { seed: Uint8Array }).seed)];

  const dir = await mkdtemp(join(tmpdir(), "agentgw-printed-"));
  try {
    const credsPath = join(dir, "agent.creds");
    await writeFile(credsPath, `-----BEGIN NATS AGENTGW-CREDENTIAL JWT-----\n${jwt}\n------END NATS AGENTGW-CREDENTIAL JWT------\n\n-----BEGIN USER NKEY SEED-----\n${userSeed}\n------END USER NKEY SEED------\n`, { mode: 0o600 });
    await writeFile(join(dir, "agent.nk"), `${userSeed}\n`, { mode: 0o600 });
    await writeFile(join(dir, "agent.xk"), `${curveSeed}\n`, { mode: 0o600 });

    const uk = userKeyPair(userSeed);
    const ck = curveKeyPair(curveSeed);
    const creds = await readCreds(credsPath);
    const read: [string, unknown][] = [
      ["userKeyPair", uk],
      ["curveKeyPair", ck],
      ["readUserSeed", await readUserSeed(join(dir, "agent.nk"))],
      ["readCurveSeed", await readCurveSeed(join(dir, "agent.xk"))],
      ["readCreds", creds],
      ["parseCreds", parseCreds(`-----BEGIN NATS AGENTGW-CREDENTIAL JWT-----\n${jwt}\n------END NATS AGENTGW-CREDENTIAL JWT------\n-----BEGIN USER NKEY SEED-----\n${userSeed}\n------END USER NKEY SEED------\n`)],
      ["readCreds().key", creds.key],
    ];
    for (const [name, v] of read) {
      assertHidden(name, v, secrets);
    }
    // What they do print: the public keys and the credential's jti.
    assert.match(inspect(uk), new RegExp(user.getPublicKey()));
    assert.match(inspect(ck), new RegExp(curve.getPublicKey()));
    assert.equal(String(creds), `Creds{jwt[jti=CRED7TESTJTI] ${user.getPublicKey()}}`);
    assert.deepEqual(JSON.parse(JSON.stringify(creds)), { credential: "jwt[jti=CRED7TESTJTI]", key: user.getPublicKey() });

    // Hidden, not gone: the credential and the keys still work.
    assert.equal(creds.credential, jwt);
    assert.equal(jwtHead, jwt.split(".")[0]);
    const msg = utf8("hello");
    assert.ok(user.verify(msg, creds.key.sign(msg)));
    assert.deepEqual(Array.from(uk.getSeed()), Array.from(user.getSeed()));
    const peer = createCurve();
    const sealed = ck.seal(msg, peer.getPublicKey());
    assert.deepEqual(Array.from(peer.open(sealed, curve.getPublicKey()) ?? []), Array.from(msg));
    assert.equal(fromB64url(jwtSig)?.length, 64);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
