// Header values read as received (docs/wire.md, "Headers"), as the Go
// SDK reads them through nats.go: the spaces and tabs after the colon are
// framing, anything else is the value, so "decision " (trailing space)
// is not "decision". nats.js trims every value it decodes; the SDK reads
// the raw header block instead, for core messages and JetStream ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect as tcp } from "node:net";
import { once } from "node:events";
import { inspect } from "node:util";
import { createAccount, createCurve, createServer, createUser } from "@nats-io/nkeys";
import { MsgImpl } from "@nats-io/nats-core/internal";
import { Agent } from "../src/agent.js";
import { Consumer } from "../src/consumer.js";
import { VerificationError } from "../src/errors.js";
import { concat, digestHex } from "../src/internal/bytes.js";
import { signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import { Box } from "../src/keys.js";
import { formatNoticeDoc, isNotice } from "../src/notice.js";
import { verifyReply } from "../src/reply.js";
import { headersOf } from "../src/verify.js";
import { bytes, throwsReason } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { CLOCK, forward, issueCredential, newActor, newWorld, TARGET, TENANT, unix } from "./world.js";

/** block writes a NATS header block of lines as given. */
function block(...lines: string[]): Uint8Array {
  return bytes(`NATS/1.0\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`);
}

/** natsMsg is a core message as nats.js hands it out, from its raw header block and data. */
function natsMsg(hdr: Uint8Array, data: Uint8Array): MsgImpl {
  const raw = concat(hdr, data);
  return new MsgImpl({ subject: bytes("agentgw.reply.x"), sid: 1, size: raw.length, hdr: hdr.length } as never, raw, {} as never);
}

test("headersOf: a nats.js message's values as received, not nats.js's trimmed ones", () => {
  const padded = natsMsg(block("Agentgw-Notice: decision ", "Agentgw-Message-Id:\t 1\t"), bytes("{}"));
  // The premise: nats.js trims.
  assert.equal(padded.headers?.get("Agentgw-Notice"), "decision");
  assert.equal(headersOf(padded)?.get("Agentgw-Notice"), "decision ");
  assert.equal(headersOf(padded)?.get("Agentgw-Message-Id"), "1\t");
  assert.equal(isNotice(padded), false, "a padded Agentgw-Notice is not a notice");
  assert.equal(isNotice(natsMsg(block("Agentgw-Notice: decision"), bytes("{}"))), true);
  assert.equal(isNotice(natsMsg(block("Agentgw-Notice:decision"), bytes("{}"))), true, "no space after the colon");
  assert.equal(headersOf(natsMsg(new Uint8Array(0), bytes("{}"))), undefined, "no headers");
  // A JetStream message keeps the core message in msg.
  assert.equal(headersOf({ msg: padded } as never)?.get("Agentgw-Notice"), "decision ");
  // Anything else is taken as given.
  const map = new Map([["Agentgw-Notice", " decision"]]);
  assert.equal(headersOf({ headers: map })?.get("Agentgw-Notice"), " decision");
});

test("verifyReply: a padded Agentgw-Sealed-From or Agentgw-Decision is not the gateway's", () => {
  const gw = createServer();
  const gwCurve = new Box(createCurve());
  const agentBox = new Box(createCurve());
  const me = createUser().getPublicKey();
  const data = gwCurve.seal(bytes(`{"refund_id":"rf_1"}`), agentBox.publicKey);
  const c: ClaimsToSign = {
    jti: "R1", sub: me, aud: me, iat: unix(CLOCK), exp: unix(CLOCK) + 60, tenant: TENANT, scope: "respond:refunds.draft_refund",
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736", messageId: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801", bodyDigest: "ab".repeat(32),
    payloadDigest: digestHex(data), route: "reply",
  };
  const tok = signBatch(gw, [wireClaims(gw.getPublicKey(), c)])[0]!;
  const receiver = { publicKey: me, tenant: TENANT, gatewayXKey: gwCurve.publicKey, box: agentBox, now: () => CLOCK };
  const opt = { trustedGateways: [gw.getPublicKey()] };
  const msg = (decision: string, from: string) => natsMsg(block(`Agentgw-Decision: ${decision}`, `Agentgw-Sealed-From: ${from}`), data);
  const r = verifyReply(receiver, msg(tok, gwCurve.publicKey), opt);
  assert.equal(r.string(), `{"refund_id":"rf_1"}`);
  // Printed, it names the payload's length: neither its text nor the
  // digest of its text, which would let a log's reader confirm a guess.
  for (const s of [String(r), JSON.stringify(r), inspect(r)]) {
    assert.ok(!s.includes("rf_1") && !s.includes(digestHex(r.payload)), `printed reply shows its payload: ${s}`);
    assert.ok(s.includes("20 bytes") || s.includes(`"payload_bytes":20`), `printed reply lacks its length: ${s}`);
  }
  throwsReason(() => verifyReply(receiver, msg(tok, `${gwCurve.publicKey} `), opt), "seal_mismatch", "padded sealed-from");
  throwsReason(() => verifyReply(receiver, msg(`${tok}\t`, gwCurve.publicKey), opt), "decision_token_invalid", "padded token");
});

const nats = useNatsServer({
  setup: async (f) => {
    await f.jsm.streams.add({ name: "AGENTGW_IN", subjects: ["agentgw.in.*.*"] });
    await f.jsm.streams.add({ name: "AGENTGW_CAP", subjects: ["agentgw.cap.>"] });
  },
});

/**
 * hpub publishes data with the header block hdr as raw protocol: nats.js
 * trims the values it is given, so it cannot send a padded one.
 */
async function hpub(subject: string, hdr: Uint8Array, data: Uint8Array): Promise<void> {
  const u = new URL(nats.srv.url);
  const s = tcp(Number(u.port), u.hostname);
  await once(s, "data"); // INFO
  let got = "";
  s.on("data", (b: Buffer) => (got += b.toString()));
  s.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n`);
  s.write(`HPUB ${subject} ${hdr.length} ${hdr.length + data.length}\r\n`);
  s.write(concat(hdr, data));
  s.write("\r\nPING\r\n");
  while (!got.includes("PONG")) {
    if (got.includes("-ERR")) {
      assert.fail(`server refused the publish: ${got}`);
    }
    await once(s, "data");
  }
  s.end();
}

test("DecisionWatch: a notice marked `Agentgw-Notice: decision ` is skipped, the exact one taken", async () => {
  const gw = createServer();
  const kp = createUser();
  const agent = new Agent(nats.nc, { credential: issueCredential(createAccount(), { sub: kp.getPublicKey(), scopes: [], xkey: "" }), key: kp });
  const id = "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801";
  const doc = (target: string): Uint8Array => {
    const n = bytes(JSON.stringify({ message_id: id, route: "allow", target }));
    const now = new Date();
    const c: ClaimsToSign = {
      jti: `N${target.length}`, sub: kp.getPublicKey(), aud: kp.getPublicKey(), iat: unix(now), exp: unix(now) + 300, tenant: TENANT,
      scope: "notice", traceId: "4bf92f3577b34da6a3ce929d0e0e4736", messageId: id, bodyDigest: "ab".repeat(32),
      payloadDigest: digestHex(n), route: "notice",
    };
    return formatNoticeDoc(signBatch(gw, [wireClaims(gw.getPublicKey(), c)], false)[0]!, n);
  };
  const w = agent.watchDecisions({ trustedGateways: [gw.getPublicKey()] });
  try {
    await w.ready();
    const subject = `agentgw.reply.${TENANT}.${kp.getPublicKey()}`;
    await hpub(subject, block("Agentgw-Notice: decision ", `Agentgw-Message-Id: ${id}`), doc("padded.notice"));
    await hpub(subject, block("Agentgw-Notice: decision", `Agentgw-Message-Id: ${id} `), doc("padded.message_id"));
    await hpub(subject, block("Agentgw-Notice: decision", `Agentgw-Message-Id: ${id}`), doc("exact"));
    const d = await w.await(id, { signal: AbortSignal.timeout(10_000) });
    assert.equal(d.target, "exact");
  } finally {
    w.close();
  }
});

test("Consumer: a delivery whose Agentgw-Agent is padded is terminated decision_token_binding", async () => {
  const w = newWorld();
  const a = newActor();
  const rejected: VerificationError[] = [];
  const got: string[] = [];
  const ctl = new AbortController();
  const c = new Consumer(nats.js, {
    tenant: TENANT, targets: [TARGET], trustedGateways: [w.gwKey], clock: () => CLOCK, durable: "hdr",
    onReject: (_s, e) => rejected.push(e),
  });
  const m = forward({ w, a, target: TARGET, plain: bytes(`{"n":1}`) });
  await hpub(m.subject, block(`Agentgw-Agent: ${a.pub} `), m.data);
  await hpub(m.subject, block(`Agentgw-Agent: ${a.pub}`), forward({ w, a, target: TARGET, plain: bytes(`{"n":2}`) }).data);
  await c.consume(
    (d) => {
      got.push(d.string());
      ctl.abort();
    },
    { signal: ctl.signal },
  );
  assert.deepEqual(got, [`{"n":2}`]);
  assert.deepEqual(
    rejected.map((e) => e.reason),
    ["decision_token_binding"],
  );
});
