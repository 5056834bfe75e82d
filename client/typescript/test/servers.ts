// Real servers for the tests: a nats-server process with JetStream, and
// the gateway of this repository (`agentgw run`: an embedded nats-server
// with the least-privilege accounts, dev identities and the gateway).
// Binaries come from AGENTGW_BIN and NATS_SERVER_BIN (the Makefile builds
// them), or are built here with `go build`. Every process started is
// stopped by stop(), and on exit.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { repoRoot } from "./helpers.js";

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of children) {
    c.kill("SIGKILL");
  }
});

/** goBinary returns the path of a binary from env, or builds it from pkg. */
export function goBinary(env: string, name: string, pkg: string): string {
  const fromEnv = process.env[env];
  if (fromEnv) {
    if (!existsSync(fromEnv)) {
      throw new Error(`${env}=${fromEnv} does not exist`);
    }
    return fromEnv;
  }
  const root = repoRoot();
  const dir = join(root, "client", "typescript", "build", "bin");
  mkdirSync(dir, { recursive: true });
  const out = join(dir, name);
  const r = spawnSync("go", ["build", "-o", out, pkg], { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0) {
    throw new Error(`go build ${pkg} failed`);
  }
  return out;
}

/** freePort returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a !== null ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

async function stopChild(c: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) {
    children.delete(c);
    return;
  }
  const done = new Promise<void>((resolve) => c.once("exit", () => resolve()));
  c.kill(signal);
  const t = setTimeout(() => c.kill("SIGKILL"), 20_000);
  await done;
  clearTimeout(t);
  children.delete(c);
}

/** A plain nats-server with JetStream, no authentication. */
export interface NatsServer {
  url: string;
  /** connect opens a client connection to it. */
  connect(): Promise<NatsConnection>;
  /**
   * subscriptionsTo counts the server's subscriptions to subject over
   * every connection, from its monitoring endpoint (connz): only for a
   * server started with monitor.
   */
  subscriptionsTo(subject: string): Promise<number>;
  stop(): Promise<void>;
}

/**
 * startNatsServer runs nats-server on a free loopback port with JetStream
 * in a temporary directory; with monitor, its HTTP monitoring endpoint
 * on another free loopback port; with config, that configuration file
 * text too (the command line's host, ports and store win).
 */
export async function startNatsServer(opts: { monitor?: boolean; config?: string } = {}): Promise<NatsServer> {
  const bin = goBinary("NATS_SERVER_BIN", "nats-server", "github.com/nats-io/nats-server/v2");
  const dir = mkdtempSync(join(tmpdir(), "agentgw-ts-nats-"));
  const port = await freePort();
  const monitorPort = opts.monitor ? await freePort() : 0;
  const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir, ...(opts.monitor ? ["-m", String(monitorPort)] : [])];
  if (opts.config !== undefined) {
    const file = join(dir, "nats-server.conf");
    writeFileSync(file, opts.config);
    args.push("-c", file);
  }
  const c = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  children.add(c);
  let log = "";
  c.stderr!.on("data", (b: Buffer) => (log += b.toString()));
  const url = `nats://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const nc = await connect({ servers: url, reconnect: false });
      await nc.close();
      break;
    } catch {
      if (Date.now() > deadline || c.exitCode !== null) {
        await stopChild(c, "SIGKILL");
        throw new Error(`nats-server did not come up:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    connect: () => connect({ servers: url }),
    subscriptionsTo: async (subject) => {
      if (!opts.monitor) {
        throw new Error("subscriptionsTo: the server was started without monitor");
      }
      const r = await fetch(`http://127.0.0.1:${monitorPort}/connz?subs=1&limit=4096`);
      if (!r.ok) {
        throw new Error(`connz: HTTP ${r.status}`);
      }
      const cz = (await r.json()) as { connections?: { subscriptions_list?: string[] }[] };
      let n = 0;
      for (const conn of cz.connections ?? []) {
        n += (conn.subscriptions_list ?? []).filter((s) => s === subject).length;
      }
      return n;
    },
    stop: async () => {
      await stopChild(c, "SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The live values of a useNatsServer fixture, set by its before hook. */
export interface NatsFixture {
  readonly srv: NatsServer;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
}

/**
 * useNatsServer registers, in the calling test file, a before hook that
 * starts a nats-server (startNatsServer with opts), connects to it and
 * makes a JetStream client and manager on that connection, and an after
 * hook that closes the connection and stops the server. The returned
 * object's getters give the live values once the before hook has run.
 * setup, if given, runs at the end of that same before hook (node:test
 * does not wait for one root-level before hook before starting the next,
 * so set-up that needs the server belongs here, not in a hook of its own).
 */
export function useNatsServer(opts: { monitor?: boolean; config?: string; setup?: (f: NatsFixture) => Promise<void> } = {}): NatsFixture {
  const { setup, ...serverOpts } = opts;
  let srv: NatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  before(async () => {
    srv = await startNatsServer(serverOpts);
    nc = await srv.connect();
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
    await setup?.(fixture);
  });
  after(async () => {
    await nc?.close();
    await srv?.stop();
  });
  const fixture: NatsFixture = {
    get srv() {
      return srv;
    },
    get nc() {
      return nc;
    },
    get js() {
      return js;
    },
    get jsm() {
      return jsm;
    },
  };
  return fixture;
}

/** The running gateway of `agentgw run` and the files of its dev material. */
export interface Gateway {
  url: string;
  /** The dev directory. */
  dir: string;
  bin: string;
  /** The gateway's signing key (N…): what consumers trust. */
  gatewayKey: string;
  /** The gateway's curve key (X…): what agents seal to. */
  gatewayXKey: string;
  creds(actor: "agent" | "approver" | "consumer" | "operator"): string;
  curve(actor: "agent" | "approver" | "consumer" | "operator"): string;
  /** Seed files of the gateway's and the admin's NATS users, and the issuer's seed. */
  key(name: "nats-gateway" | "nats-admin" | "tenant_a-issuer"): string;
  /** run runs the agentgw CLI against this gateway and returns its exit code and output. */
  run(args: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The gateway's log so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

/** startGateway runs `agentgw run --dir <tmp> --port <free>` and waits until it serves. */
export async function startGateway(): Promise<Gateway> {
  const bin = goBinary("AGENTGW_BIN", "agentgw", "./cmd/agentgw");
  const dir = mkdtempSync(join(tmpdir(), "agentgw-ts-gw-"));
  const data = join(dir, "agentgw");
  const port = await freePort();
  const c = spawn(bin, ["run", "--dir", data, "--port", String(port)], { stdio: ["ignore", "pipe", "pipe"], env: cliEnv() });
  children.add(c);
  let out = "";
  c.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  c.stderr!.on("data", (b: Buffer) => (out += b.toString()));
  const deadline = Date.now() + 90_000;
  while (!out.includes("gateway serving on")) {
    if (Date.now() > deadline || c.exitCode !== null) {
      await stopChild(c, "SIGKILL");
      throw new Error(`agentgw run did not come up:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const signing = /signing (N[A-Z2-7]{55})/.exec(out)?.[1];
  const curve = /curve\s+(X[A-Z2-7]{55})/.exec(out)?.[1];
  if (!signing || !curve) {
    await stopChild(c, "SIGKILL");
    throw new Error(`agentgw run printed no gateway keys:\n${out}`);
  }
  const url = `nats://127.0.0.1:${port}`;
  return {
    url,
    dir: data,
    bin,
    gatewayKey: signing,
    gatewayXKey: curve,
    creds: (a) => join(data, "creds", `${a}.creds`),
    curve: (a) => join(data, "creds", `${a}.xk`),
    key: (n) => join(data, "keys", `${n}.nk`),
    run: (args, timeoutMs = 60_000) => runCLI(bin, dir, args, timeoutMs),
    log: () => {
      try {
        return out + "\n" + readFileSync(join(data, "gateway.log"), "utf8").split("\n").slice(-40).join("\n");
      } catch {
        return out;
      }
    },
    stop: async () => {
      await stopChild(c, "SIGINT");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function runCLI(bin: string, cwd: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(bin, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: cliEnv() });
    children.add(c);
    let stdout = "";
    let stderr = "";
    c.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
    c.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    const t = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
    c.on("error", reject);
    c.on("exit", (code, signal) => {
      clearTimeout(t);
      children.delete(c);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** startCLI starts a long-running agentgw command; stop() interrupts it. */
export function startCLI(gw: Gateway, args: string[]): { output: () => string; exited: Promise<number>; stop: () => Promise<void> } {
  const c = spawn(gw.bin, args, { stdio: ["ignore", "pipe", "pipe"], env: cliEnv() });
  children.add(c);
  let out = "";
  c.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  c.stderr!.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number>((resolve) => c.on("exit", (code) => resolve(code ?? 128)));
  return { output: () => out, exited, stop: () => stopChild(c, "SIGINT") };
}

/**
 * The environment for the agentgw CLI under test: the developer's NATS
 * settings (a selected context, a user, a server) would otherwise reach
 * it, since it honours them as the nats CLI does.
 */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ["NATS_URL", "NATS_CONTEXT", "NATS_CREDS", "NATS_NKEY", "NATS_CA", "NATS_CERT", "NATS_KEY"]) delete env[k];
  return { ...env, ...extra };
}
