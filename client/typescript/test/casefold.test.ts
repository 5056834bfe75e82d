// The case folding table is Go's: regenerated from Go's unicode package
// and compared with the committed file, so a Go release with a newer
// Unicode cannot make the two scanners disagree on duplicate names.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./helpers.js";

test("casefold table matches Go's unicode.SimpleFold", () => {
  const dir = join(repoRoot(), "client", "typescript");
  const r = spawnSync("go", ["run", "./scripts/casefold"], { cwd: dir, encoding: "utf8", maxBuffer: 1 << 24 });
  assert.equal(r.status, 0, r.stderr);
  const committed = readFileSync(join(dir, "src", "internal", "casefold.ts"), "utf8");
  assert.ok(r.stdout === committed, "src/internal/casefold.ts is stale: run `npm run casefold`");
});
