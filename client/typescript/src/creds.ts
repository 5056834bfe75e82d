// Credentials: compact nkey JWTs and NATS .creds files, read the way the
// Go SDK reads them (jwt/v2's decorated blocks), and the connect options
// of a tenant user.
import { readFile } from "node:fs/promises";
import { inspect } from "node:util";
import { nkeyAuthenticator, type Authenticator } from "@nats-io/transport-node";
import type { KeyPair } from "@nats-io/nkeys";
import { ConfigError } from "./errors.js";
import { fromB64url, fromUtf8, utf8 } from "./internal/bytes.js";
import { decodeLenient, decodeStrict } from "./internal/strict.js";
import { curveKeyPair, userKeyPair } from "./keys.js";

/** MAX_TOKEN_SIZE bounds a compact JWT, in bytes. */
export const MAX_TOKEN_SIZE = 16 << 10;

const JWT_HEADER = `{"typ":"JWT","alg":"ed25519-nkey"}`;
const JWT_HEADER_B64 = Buffer.from(JWT_HEADER).toString("base64url");

/** A compact nkey JWT split into its parts; its signature is not checked. */
export interface ParsedJWT {
  /** The decoded claims JSON. */
  payload: Uint8Array;
  /** header "." payload, exactly as received: what the signature covers. */
  signingInput: Uint8Array;
  /** The 64-byte signature. */
  signature: Uint8Array;
}

/**
 * parseJWT splits a compact nkey JWT and checks its form: at most
 * MAX_TOKEN_SIZE bytes, three canonical unpadded base64url segments, a
 * header that is exactly {typ JWT, alg ed25519-nkey} (no other or
 * duplicate members), and a 64-byte signature. It throws a TypeError that
 * never quotes the token.
 */
export function parseJWT(token: string): ParsedJWT {
  if (typeof token !== "string" || token === "") {
    throw new TypeError("malformed jwt: empty");
  }
  if (token.length > MAX_TOKEN_SIZE) {
    throw new TypeError(`malformed jwt: ${token.length} bytes exceeds ${MAX_TOKEN_SIZE}`);
  }
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
    throw new TypeError("malformed jwt: not three base64url segments");
  }
  const [head, body, sig] = token.split(".") as [string, string, string];
  if (head !== JWT_HEADER_B64) {
    checkHeader(head);
  }
  const payload = fromB64url(body);
  if (payload === undefined) {
    throw new TypeError("malformed jwt: payload is not canonical base64url");
  }
  const signature = fromB64url(sig);
  if (signature === undefined || signature.length !== 64) {
    throw new TypeError("malformed jwt: signature is not 64 canonical base64url bytes");
  }
  return { payload, signingInput: utf8(token.slice(0, head.length + 1 + body.length)), signature };
}

function checkHeader(seg: string): void {
  if (seg.length > 256) {
    throw new TypeError("malformed jwt: header too long");
  }
  const raw = fromB64url(seg);
  if (raw === undefined) {
    throw new TypeError("malformed jwt: header is not canonical base64url");
  }
  const h = decodeStrict(raw, { typ: "string", alg: "string" });
  if (h === undefined) {
    throw new TypeError("malformed jwt: header is not strict JSON {typ, alg}");
  }
  if (h.typ !== "JWT") {
    throw new TypeError("malformed jwt: header typ is not JWT");
  }
  if (h.alg !== "ed25519-nkey") {
    throw new TypeError("malformed jwt: header alg is not ed25519-nkey");
  }
}

/**
 * The claims of an agentgw credential the SDK reads, unverified: the
 * gateway verifies credentials, an agent only checks that its own
 * configuration matches the one it was given.
 */
export interface CredentialClaims {
  /** jti: names the credential in logs. */
  jti: string;
  /** sub: the agent's public user ('U') key. */
  sub: string;
  /** aud: the gateway's audience. */
  aud: string;
  /** iss: the tenant issuer's public ('A') key. */
  iss: string;
  /** exp, in Unix seconds; 0 if absent. */
  exp: number;
  /** nats.tenant */
  tenant: string;
  /** nats.service */
  service: string;
  /** nats.scopes */
  scopes: string[];
  /** nats.xkey: the agent's public curve ('X') key. */
  xkey: string;
  /** nats.type */
  type: string;
  /**
   * nats.principal: who the credential was issued for (the token
   * exchange writes "<IdP issuer>#<IdP subject>"); "" when absent. The
   * gateway refuses an approval by a credential naming the requester's
   * principal (self_approval).
   */
  principal: string;
}

/** peekCredential reads a credential's claims without verifying it. */
export function peekCredential(token: string): CredentialClaims {
  const j = parseJWT(token);
  const c = decodeLenient(j.payload);
  if (c === undefined) {
    throw new TypeError("credential claims are not a strict JSON object");
  }
  const n = typeof c.nats === "object" && c.nats !== null ? (c.nats as Record<string, unknown>) : {};
  const str = (v: unknown): string => (typeof v === "string" ? v : "");
  return {
    jti: str(c.jti),
    sub: str(c.sub),
    aud: str(c.aud),
    iss: str(c.iss),
    exp: typeof c.exp === "number" ? c.exp : 0,
    tenant: str(n.tenant),
    service: str(n.service),
    scopes: Array.isArray(n.scopes) ? n.scopes.filter((s): s is string => typeof s === "string") : [],
    xkey: str(n.xkey),
    type: str(n.type),
    principal: str(n.principal),
  };
}

/**
 * Credentials: an agentgw credential JWT and the agent's user key pair.
 * The Creds that parseCreds and readCreds return print neither:
 * `credential` is not enumerable, and inspect, toString and
 * JSON.stringify show the credential's jti and the key's public key.
 */
export interface Creds {
  /** The credential JWT. A secret: never log it. */
  credential: string;
  /** The agent's user key pair, the credential's subject. */
  key: KeyPair;
}

// jwt/v2's decorated blocks, as the Go SDK finds them (gateway/identity's
// credsBlock, the regular expression
// \s*(?:(?:-{3,}.*-{3,}\r?\n)([\w\-.=]+)(?:\r?\n-{3,}.*-{3,}(\r?\n|\z)))
// under Go's linear-time engine), read line by line: a JavaScript regular
// expression of that shape backtracks, and a few hundred '-' took it
// minutes. An opening line holds "---" and, from its first "---" to its
// end (less one CR), at least six characters ending in "---"; the next
// line, less one CR, is the value, one or more of [A-Za-z0-9_.=-]; the
// line after it starts and ends with "---", at least six characters, less
// one CR before its LF (at the end of the text, no CR). Searching goes on
// after the closing line. Time linear in the text.
export function* decoratedBlocks(text: string): Generator<string> {
  const lines = text.split("\n"); // the last one has no LF after it
  const n = lines.length;
  for (let i = 0; i + 2 < n; i++) {
    const open = lessCR(lines[i]!);
    const at = open.indexOf("---");
    if (at < 0 || open.length - at < 6 || !open.endsWith("---")) {
      continue;
    }
    const value = lessCR(lines[i + 1]!);
    if (!BLOCK_VALUE.test(value)) {
      continue;
    }
    const close = i + 2 === n - 1 ? lines[i + 2]! : lessCR(lines[i + 2]!);
    if (close.length < 6 || !close.startsWith("---") || !close.endsWith("---")) {
      continue;
    }
    yield value;
    i += 2;
  }
}

const BLOCK_VALUE = /^[\w\-.=]+$/;

function lessCR(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

// An nkey user seed exactly as nkeys writes it: "SU" and 56 more
// characters of A–Z 2–7 (nkeys.js would also decode longer text).
const USER_SEED = /^SU[A-Z2-7]{56}$/;

/**
 * parseCreds reads a NATS .creds file as the Go SDK does (docs/wire.md,
 * ".creds files"): valid UTF-8, with at least two decorated blocks, the
 * first a credential of valid compact-JWT form whose claims are strict
 * JSON, the second the nkey user seed of the credential's subject.
 * Anything around and after the two blocks is ignored; a bare seed line
 * is not a seed block. The credential's signature is not checked (the
 * gateway does that). Throws a ConfigError that never quotes the file.
 */
export function parseCreds(data: Uint8Array | string): Creds {
  const text = typeof data === "string" ? wellFormed(data) : fromUtf8Strict(data);
  const blocks: string[] = [];
  for (const b of decoratedBlocks(text)) {
    if (blocks.push(b) === 2) {
      break;
    }
  }
  if (blocks.length === 0) {
    throw new ConfigError("creds: no decorated JWT block");
  }
  const credential = blocks[0]!;
  let sub: string;
  try {
    sub = peekCredential(credential).sub;
  } catch (err) {
    throw new ConfigError(`creds: token: ${(err as Error).message}`);
  }
  const seed = blocks[1];
  if (seed === undefined) {
    throw new ConfigError("creds: no user seed block");
  }
  if (!seed.startsWith("SU")) {
    throw new ConfigError("creds: seed is not a user ('SU') seed");
  }
  let key: KeyPair;
  try {
    if (!USER_SEED.test(seed)) {
      throw new TypeError();
    }
    key = userKeyPair(seed);
  } catch {
    throw new ConfigError("creds: seed does not decode");
  }
  if (key.getPublicKey() !== sub) {
    key.clear();
    throw new ConfigError("creds: seed is not the key of the token's subject");
  }
  return hiddenCreds(credential, key);
}

// A jti shown in a printed form: the Go SDK's credential id alphabet,
// anything else shown as redacted.
const SHOWN_JTI = /^[A-Za-z0-9._:-]{1,128}$/;

// hiddenCreds returns Creds whose printed forms (inspect, toString,
// JSON.stringify) name the credential by its jti and the key by its
// public key: the JWT is a secret, and the key pair hides its seed.
function hiddenCreds(credential: string, key: KeyPair): Creds {
  let jti = "";
  try {
    jti = peekCredential(credential).jti;
  } catch {
    // parseCreds has read the claims already
  }
  const shown = SHOWN_JTI.test(jti) ? `jwt[jti=${jti}]` : "[redacted jwt]";
  const pub = key.getPublicKey();
  const c = { key } as Creds;
  Object.defineProperties(c, {
    credential: { value: credential, enumerable: false },
    toString: { value: () => `Creds{${shown} ${pub}}` },
    toJSON: { value: () => ({ credential: shown, key: pub }) },
    [inspect.custom]: { value: () => `Creds{${shown} ${pub}}` },
  });
  return c;
}

// A string is UTF-8 text unless it holds a lone surrogate (in u mode a
// pair is one code point and does not match).
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function wellFormed(s: string): string {
  if (LONE_SURROGATE.test(s)) {
    throw new ConfigError("file is not UTF-8");
  }
  return s;
}

function fromUtf8Strict(b: Uint8Array): string {
  try {
    return fromUtf8(b);
  } catch {
    throw new ConfigError("file is not UTF-8");
  }
}

/**
 * safePath is a file path as an error may show it: what could be an nkey
 * seed, or a run of 24 or more base64url characters mixing upper case,
 * lower case and digits as a JWT or bearer token does (a secret pasted
 * where its file's path belongs), is replaced by its length, as the Go
 * SDK's identity.SafeText does.
 */
export function safePath(path: string): string {
  return path
    .replace(/S[A-Z2-7]{57}/g, (s) => `S…(${s.length} characters)`)
    .replace(/[A-Za-z0-9_-]{24,}/g, (s) => (/[a-z]/.test(s) && /[A-Z]/.test(s) && /[0-9]/.test(s) ? `…(${s.length} characters)` : s));
}

/** readCreds reads and parses the .creds file at path. */
export async function readCreds(path: string): Promise<Creds> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    throw new ConfigError(`creds: read ${safePath(path)}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
  try {
    return parseCreds(data);
  } finally {
    data.fill(0);
  }
}

/**
 * trimLineEnds returns a line of a seed file less the spaces, tabs and
 * CRs at its ends, and only those, as Go's identity.ParseSeedFile does
 * (bytes.Trim(line, " \t\r")): String.prototype.trim would also take
 * no-break spaces and a byte order mark, Go's strings.TrimSpace no-break
 * spaces and NEL but no byte order mark. It looks at each character at
 * most once, from either end: the expression /^[ \t\r]+|[ \t\r]+$/g
 * takes time quadratic in a run of them inside a line in V8, which tries
 * the second branch at every position of the run.
 */
export function trimLineEnds(line: string): string {
  let start = 0;
  let end = line.length;
  while (start < end && isLineEnd(line.charCodeAt(start))) {
    start++;
  }
  while (end > start && isLineEnd(line.charCodeAt(end - 1))) {
    end--;
  }
  return line.slice(start, end);
}

function isLineEnd(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d; // space, tab, CR
}

/** The seeds a seed file may hold: a user ('SU…') or a curve ('SX…') seed. */
export type SeedRole = "user" | "curve";

const SEED_TEXT: Record<SeedRole, RegExp> = { user: /^SU[A-Z2-7]{56}$/, curve: /^SX[A-Z2-7]{56}$/ };

/**
 * parseSeedFile reads the seed of role from the contents of a seed file
 * as the Go SDK does (docs/wire.md, "Seed files"; Go's
 * identity.ParseSeedFile): valid UTF-8; a file holding a decorated block
 * is a .creds file, read by parseCreds, whose key is its user seed (it
 * has no curve seed); otherwise, of its lines (split at LF) less the
 * spaces, tabs and CRs at their ends, exactly one starts with "S": the
 * seed, "SU" (user) or "SX" (curve) and 56 more characters of A–Z 2–7
 * with a valid checksum. Other lines are ignored. Throws a ConfigError
 * that never quotes the file.
 */
export function parseSeedFile(data: Uint8Array | string, role: SeedRole): KeyPair {
  const want = role === "user" ? "SU" : "SX";
  const text = typeof data === "string" ? wellFormed(data) : fromUtf8Strict(data);
  if (!decoratedBlocks(text).next().done) {
    if (role !== "user") {
      throw new ConfigError(`seed file: a .creds file holds no ${want} seed`);
    }
    return parseCreds(text).key;
  }
  let seed: string | undefined;
  for (const line of text.split("\n")) {
    const s = trimLineEnds(line);
    if (!s.startsWith("S")) {
      continue;
    }
    if (seed !== undefined) {
      throw new ConfigError("seed file: more than one seed line");
    }
    seed = s;
  }
  if (seed === undefined) {
    throw new ConfigError("seed file: no seed line");
  }
  // nkeys.js would also decode a seed with a character more.
  if (!SEED_TEXT[role].test(seed)) {
    throw new ConfigError(`seed file: the seed line is not a ${want} seed`);
  }
  try {
    return role === "user" ? userKeyPair(seed) : curveKeyPair(seed);
  } catch {
    throw new ConfigError(`seed file: the ${want} seed does not decode`);
  }
}

/**
 * readCurveSeed reads a curve key from a seed file holding an "SX…" seed
 * on a line of its own (as `agentgw run` and `agentgw keys new --type
 * curve` write them), by parseSeedFile's rules. The error names the file,
 * never its contents.
 */
export async function readCurveSeed(path: string): Promise<KeyPair> {
  return readSeedFile(path, "curve");
}

/**
 * readUserSeed reads a user key from an nkey seed file or a .creds file
 * by parseSeedFile's rules: a seed file with exactly one seed line, a
 * user ('SU…') seed, or a .creds file and its seed block.
 */
export async function readUserSeed(path: string): Promise<KeyPair> {
  return readSeedFile(path, "user");
}

async function readSeedFile(path: string, role: SeedRole): Promise<KeyPair> {
  const data = await readSecretFile(path, role === "user" ? "seed" : "curve seed");
  try {
    return parseSeedFile(data, role);
  } catch (err) {
    throw new ConfigError(`${safePath(path)}: ${(err as Error).message}`);
  } finally {
    data.fill(0);
  }
}

async function readSecretFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ConfigError(`${what}: read ${safePath(path)}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
}

/**
 * UserConnectOptions are the options of `connect` (from
 * @nats-io/transport-node) for a static nkey user: how tenant users (an
 * agent, an approver, a consumer) connect to the gateway's NATS.
 */
export interface UserConnectOptions {
  /** Answers the server's nonce with the user key; the seed never leaves the process. */
  authenticator: Authenticator;
  /** _INBOX.<public key>: the only inboxes such a user may subscribe to. */
  inboxPrefix: string;
}

/**
 * userConnectOptions returns the connect options of the static nkey user
 * whose seed is in path, read by readUserSeed (an nkey seed file, or an
 * agentgw .creds file: tenant accounts name each agent, approver and
 * consumer by its agentgw key). Spread them into connect's options:
 *
 *     const nc = await connect({ servers, ...(await userConnectOptions("agent.creds")) });
 */
export async function userConnectOptions(path: string): Promise<UserConnectOptions> {
  const kp = await readUserSeed(path);
  const pub = kp.getPublicKey();
  // A copy: clearing the key pair zeroes the array it hands out.
  const seed = Uint8Array.from(kp.getSeed());
  kp.clear();
  const inner = nkeyAuthenticator(seed);
  // The user key signs the agent's envelopes too: it signs no nonce but
  // a server's, or a server that sent an envelope's signing input as its
  // nonce would get back the agent's signature of that envelope.
  const authenticator: Authenticator = (nonce?: string) => {
    if (nonce !== undefined && !isServerNonce(nonce)) {
      throw new ConfigError("the server's nonce is not a nats-server nonce; the user key signs no other bytes");
    }
    return inner(nonce);
  };
  return { authenticator, inboxPrefix: `_INBOX.${pub}` };
}

/**
 * isServerNonce reports whether nonce has the shape of a nats-server
 * connection nonce: 1 to 64 characters of the base64url alphabet (the
 * server sends 15), as the Go SDK's ServerNonce.
 */
export function isServerNonce(nonce: string): boolean {
  return /^[A-Za-z0-9_-]{1,64}$/.test(nonce);
}
