// Shared test helpers: where the repository is, its test vectors, and
// small constructors.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { DeniedError } from "../src/errors.js";
import type { ReasonCode } from "../src/reason.js";

/** repoRoot is the directory of the repository's go.mod. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "go.mod")) && existsSync(join(dir, "testdata"))) {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) {
      throw new Error("test: no go.mod above the tests");
    }
    dir = up;
  }
}

/** testdata returns the path of a file under the repository's testdata/. */
export function testdata(...parts: string[]): string {
  return join(repoRoot(), "testdata", ...parts);
}

/** readJSON reads a JSON file under testdata/. */
export function readJSON<T = any>(...parts: string[]): T {
  return JSON.parse(readFileSync(testdata(...parts), "utf8")) as T;
}

/** listTestdata lists the files of a testdata/ directory, or [] if it is absent. */
export function listTestdata(...parts: string[]): string[] {
  const dir = testdata(...parts);
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

export const enc = new TextEncoder();
export const dec = new TextDecoder();

/** bytes encodes s as UTF-8. */
export function bytes(s: string): Uint8Array {
  return enc.encode(s);
}

/** throwsReason asserts that fn throws a DeniedError with reason. */
export function throwsReason(fn: () => unknown, reason: ReasonCode, what = ""): DeniedError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof DeniedError, `${what}: threw ${String(caught)}; want a DeniedError ${reason}`);
  assert.equal(caught.reason, reason, `${what}: reason ${caught.reason} (${caught.message}); want ${reason}`);
  return caught;
}

/** rejectsWith asserts that p rejects with an instance of cls and returns the error. */
export async function rejectsWith<E extends Error>(p: Promise<unknown>, cls: new (...a: any[]) => E, what = ""): Promise<E> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof cls, `${what}: rejected with ${String(err)}; want ${cls.name}`);
    return err;
  }
  assert.fail(`${what}: resolved; want ${cls.name}`);
}

/**
 * xorshift32 is a fixed-seed pseudo-random walk (Marsaglia's xorshift,
 * 13/17/5) for tests that compare two implementations over many
 * generated inputs and must see the same inputs on every run.
 */
export function xorshift32(seed: number): () => number {
  let state = seed;
  return (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
}
