// The reason table is the Go table: same codes, Go names, stages and
// descriptions, in the same order. Parsed from the Go source, so a code
// added (or changed) on one side only fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { DeniedError, reasonOf, VerificationError } from "../src/errors.js";
import { isReasonCode, lookupReason, Reason, REASONS } from "../src/reason.js";
import { repoRoot } from "./helpers.js";

/** findGoTable finds the Go file that holds the reason table (`var All = []Info{`). */
function findGoTable(): string {
  const root = repoRoot();
  const skip = new Set(["node_modules", ".git", "testdata", "build", "dist", "bin"]);
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (skip.has(name)) continue;
      const st = statSync(p);
      if (st.isDirectory()) {
        stack.push(p);
      } else if (name.endsWith(".go") && !name.endsWith("_test.go")) {
        const src = readFileSync(p, "utf8");
        if (src.includes("var All = []Info{") && src.startsWith("package reason")) {
          return src;
        }
      }
    }
  }
  throw new Error("no Go reason table (package reason, var All = []Info{) in the repository");
}

interface GoRow {
  name: string;
  code: string;
  stage: string;
  description: string;
}

function goTable(): GoRow[] {
  const src = findGoTable();
  const consts = new Map<string, string>();
  for (const m of src.matchAll(/^\s*(\w+)\s+Code = "([a-z0-9_]+)"/gm)) {
    consts.set(m[1]!, m[2]!);
  }
  const stages = new Map<string, string>();
  for (const m of src.matchAll(/^\s*(Stage\w+)\s+Stage = "([a-z_]+)"/gm)) {
    stages.set(m[1]!, m[2]!);
  }
  const body = src.slice(src.indexOf("var All = []Info{"));
  const rows: GoRow[] = [];
  for (const m of body.matchAll(/^\s*\{(\w+), (Stage\w+|"[a-z_]+"), "((?:[^"\\]|\\.)*)"\},\s*$/gm)) {
    const name = m[1]!;
    const stage = m[2]!.startsWith('"') ? m[2]!.slice(1, -1) : stages.get(m[2]!);
    assert.ok(consts.has(name), `Go table row ${name} has no constant`);
    assert.ok(stage !== undefined, `Go table row ${name}: unknown stage ${m[2]}`);
    rows.push({ name, code: consts.get(name)!, stage, description: JSON.parse(`"${m[3]!}"`) as string });
  }
  assert.ok(rows.length > 40, `parsed only ${rows.length} rows of the Go table`);
  assert.equal(rows.length, consts.size, "every Go code constant is in the Go table");
  return rows;
}

test("reason table matches the Go reason table", () => {
  const want = goTable();
  assert.deepEqual(
    REASONS.map((r) => ({ code: r.code, stage: r.stage, description: r.description })),
    want.map((r) => ({ code: r.code, stage: r.stage, description: r.description })),
  );
  assert.deepEqual(
    Object.entries(Reason),
    want.map((r) => [r.name, r.code]),
    "Reason names are the Go constant names",
  );
});

test("reason codes are subject safe and unique", () => {
  const seen = new Set<string>();
  for (const r of REASONS) {
    assert.match(r.code, /^[a-z][a-z0-9_]{1,63}$/);
    assert.ok(!seen.has(r.code), `duplicate ${r.code}`);
    seen.add(r.code);
    assert.ok(isReasonCode(r.code));
    assert.equal(lookupReason(r.code), r);
  }
  assert.ok(!isReasonCode("no_such_code_at_all"));
  assert.equal(lookupReason("no_such_code_at_all"), undefined);
});

test("reasonOf fails closed", () => {
  assert.equal(reasonOf(undefined), undefined);
  assert.equal(reasonOf(new DeniedError("wrong_audience", "aud x")), "wrong_audience");
  assert.equal(reasonOf(new VerificationError("decision_token_binding")), "decision_token_binding");
  assert.equal(reasonOf("bad_signature"), "bad_signature");
  assert.equal(reasonOf(new Error("disk on fire")), "internal_error");
  const e = new VerificationError("seal_broken", "jti X: does not open");
  assert.ok(e instanceof DeniedError);
  assert.equal(e.message, "seal_broken: jti X: does not open");
  assert.equal(e.name, "VerificationError");
});
