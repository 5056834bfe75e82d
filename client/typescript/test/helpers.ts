// Shared test helpers: where the repository is, its test vectors, and
// small constructors.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Approver } from "../src/approver.js";
import type { Consumer, ReceivedDelivery } from "../src/consumer.js";
import { DeniedError, type VerificationError } from "../src/errors.js";
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

/** sleep resolves after ms. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** bound resolves after ms without keeping the process alive: the bound of a wait that may end sooner. */
export const bound = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

/** waitFor polls cond every 20 ms until it holds, and fails the test after 15 s. */
export async function waitFor(what: string, cond: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      assert.fail(`timed out waiting for ${what}`);
    }
    await sleep(20);
  }
}

/**
 * firstShown watches with ap until it shows a request, or for at most
 * 10 s (not shown: the caller's assertion fails rather than hangs), and
 * returns the held message ids shown: one, or none.
 */
export async function firstShown(ap: Approver): Promise<string[]> {
  const shown: string[] = [];
  const ctl = new AbortController();
  const giveUp = setTimeout(() => ctl.abort(), 10_000);
  try {
    await ap.watch(
      (req) => {
        shown.push(req.heldMessageId);
        ctl.abort();
      },
      { signal: ctl.signal },
    );
  } finally {
    clearTimeout(giveUp);
  }
  return shown;
}

/** terminations collects the stream sequence and reason of every message terminated on the approval stream, seen through nc. */
export function terminations(nc: NatsConnection): { got: Map<number, string>; stop: () => void } {
  const got = new Map<number, string>();
  const sub = nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.AGENTGW_APPROVAL.*", {
    callback: (_err, m) => {
      const a = JSON.parse(dec.decode(m.data)) as { stream_seq: number; reason?: string };
      got.set(a.stream_seq, a.reason ?? "");
    },
  });
  return { got, stop: () => sub.unsubscribe() };
}

/** recorder is a Consumer's handler and onReject, recording both: the Go tests' recorder. */
export class Recorder {
  readonly calls: string[] = []; // message id per handler call
  readonly rejected: VerificationError[] = [];
  /** fail is how many handler calls reject (nak) first. */
  constructor(readonly fail = 0) {}
  readonly handle = (d: ReceivedDelivery): void => {
    this.calls.push(d.messageId);
    if (this.calls.length <= this.fail) {
      throw new Error("transient");
    }
  };
  readonly reject = (_subject: string, err: VerificationError): void => {
    this.rejected.push(err);
  };
  rejections(reason: string): number {
    return this.rejected.filter((e) => e.reason === reason).length;
  }
}

/** consumeInBackground runs c.consume with r's handler until the returned stop is called; stop resolves as consume does. */
export function consumeInBackground(c: Consumer, r: Recorder): () => Promise<void> {
  const ctl = new AbortController();
  const serving = c.consume(r.handle, { signal: ctl.signal });
  serving.catch(() => {}); // reported by stop
  return () => {
    ctl.abort();
    return serving;
  };
}
