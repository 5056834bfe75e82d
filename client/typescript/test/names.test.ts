// Member names holding a control character: refused at every depth by the
// envelope parser and by the .creds claims reader, as the Go scanner
// refuses them (docs/wire.md, Strict JSON, rule 4); accepted by the
// readers whose Go twins do not use that scanner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeRequest } from "../src/approver.js";
import { peekCredential } from "../src/creds.js";
import { buildEnvelope, parseEnvelope, type EnvelopeFields } from "../src/envelope.js";
import { b64url } from "../src/internal/bytes.js";
import { bytes, readJSON, throwsReason } from "./helpers.js";

const w = readJSON("wire-v1.json");
const body: string = w.envelope.body; // a plain refund
const plainOf = (p: string): string => body.replace(`{"order_id":"ord_123","amount_cents":2500}`, p);
const v2 = (s: string): string => s.replace(`"v":1`, `"v":2`);
const withMember = (m: string): string => body.replace(`{"v":1,`, `{"v":1,${m},`);

// Written as they travel: escapes as JSON escapes, raw bytes as UTF-8.
const controlNames: Record<string, string> = {
  "nul escaped": `"tenant\\u0000"`,
  "nul first": `"\\u0000tenant"`,
  "unit separator": `"a\\u001fb"`,
  "newline escape": `"a\\nb"`,
  "tab escape": `"a\\tb"`,
  "del escaped": `"a\\u007fb"`,
  "del raw": `"a\u007fb"`,
  "c1 first escaped": `"a\\u0080b"`,
  "c1 last escaped": `"a\\u009Fb"`,
  "c1 raw": `"a\u009bb"`,
  "after a long name": `"${"x".repeat(100)}\\u0000"`,
};

const plainNames: Record<string, string> = {
  space: `"a b"`,
  tilde: `"a~"`,
  "no-break space": `"a\\u00a0b"`,
  "no-break raw": `"a\u00a0b"`,
  "latin-1 letter": `"\\u00e9t\\u00e9"`,
  "line separator": `"a\\u2028b"`,
  "escaped printable": `"\\u0074enant"`,
};

test("a member name holding a control character is malformed_envelope at every depth", () => {
  for (const [what, name] of Object.entries(controlNames)) {
    const bodies: Record<string, string> = {
      body: withMember(`${name}:1`),
      "body of v2": v2(withMember(`${name}:1`)),
      payload: body.replace(`"payload":{"plain":`, `"payload":{${name}:1,"plain":`),
      plain: plainOf(`{"q":"x",${name}:"tenant_b"}`),
      "plain nested": plainOf(`{"a":{"b":{${name}:1}}}`),
      "plain array": plainOf(`{"a":[1,{${name}:1}]}`),
    };
    for (const [where, b] of Object.entries(bodies)) {
      throwsReason(() => parseEnvelope(bytes(b)), "malformed_envelope", `${what} name in ${where}`);
    }
  }
  for (const [what, name] of Object.entries(plainNames)) {
    parseEnvelope(bytes(plainOf(`{"a":{${name}:1}}`))); // throws if refused
    assert.ok(what);
  }
  const e = parseEnvelope(bytes(plainOf(`{"a":"\\u0000 \\n \\u007f\\u009f \u007f\u009b"}`)));
  assert.ok(e.payload.plain !== undefined, "control characters in a value");
});

test("the offset of the refused name is given, never its bytes", () => {
  const b = plainOf(`{"q":"x","tenantQ\\u0000":"tenant_b"}`);
  const err = throwsReason(() => parseEnvelope(bytes(b)), "malformed_envelope");
  assert.equal(err.message.includes("Q"), false, err.message);
  assert.ok(err.message.includes(`offset ${b.indexOf(`"tenantQ`)}`) && err.message.includes("control character in member name"), err.message);
});

test("buildEnvelope refuses a plain payload with such a name, as the Go builder does", () => {
  const f: EnvelopeFields = {
    tenant: "tenant_a",
    audience: "billing-gateway",
    capability: "read",
    target: "kb.search",
    payload: { plain: bytes(`{"q":"x","tenant\\u0000":"tenant_b"}`) },
  };
  throwsReason(() => buildEnvelope(f, new Date("2026-11-26T01:08:41Z")), "malformed_envelope");
});

test(".creds claims with such a name are not strict JSON (the Go reader's CheckPayload)", () => {
  const [h, c, s] = (w.credential.jwt as string).split(".") as [string, string, string];
  assert.equal(peekCredential(`${h}.${c}.${s}`).sub, w.keys.agent_public);
  const claims = JSON.parse(Buffer.from(c, "base64url").toString("utf8")) as Record<string, unknown>;
  const json = JSON.stringify(claims).replace(`{"aud"`, `{"x\\u0000":1,"aud"`);
  assert.notEqual(json, JSON.stringify(claims));
  assert.throws(() => peekCredential(`${h}.${b64url(bytes(json))}.${s}`), TypeError);
});

test("an approval request's fields may hold such a name: the Go SDK's reader (jsontext) accepts it", () => {
  const a = readJSON("wire", "approval.json");
  const m = a.request as { subject: string; body: string };
  const body2 = m.body.replace(`"fields":{`, `"fields":{"note\\u0000":"x",`);
  assert.notEqual(body2, m.body);
  const req = decodeRequest(m.subject, bytes(body2), "tenant_a");
  assert.equal((req.fields as Record<string, unknown>)["note\u0000"], "x");
});
