import { test } from "node:test";
import assert from "node:assert/strict";
import { createCurve, createServer } from "@nats-io/nkeys";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Approver, type ApproverConfig } from "../src/approver.js";
import { Consumer, type ConsumerConfig } from "../src/consumer.js";
import { ConfigError } from "../src/errors.js";

// A seed pasted where a trusted gateway key or the gateway xkey belongs
// is refused, and the ConfigError, which the caller is likely to log,
// quotes it redacted (safePath, the Go SDK's identity.SafeText). The
// configuration is refused before the connection is used.
test("a seed pasted as a trusted gateway or gateway xkey is not quoted back", () => {
  const dec = new TextDecoder();
  const nseed = dec.decode(createServer().getSeed());
  const xseed = dec.decode(createCurve().getSeed());
  const js = {} as JetStreamClient;
  const nc = {} as NatsConnection;
  const refused = (what: string, make: () => unknown, want: RegExp[]): void => {
    assert.throws(make, (err: unknown) => {
      assert.ok(err instanceof ConfigError, `${what}: ${String(err)}`);
      for (const seed of [nseed, xseed]) {
        assert.ok(!err.message.includes(seed.slice(0, 20)), `${what} quotes a seed`);
      }
      for (const w of want) {
        assert.match(err.message, w, what);
      }
      return true;
    });
  };
  const cc = { tenant: "tenant_a", targets: ["refunds.draft_refund"], trustedGateways: [nseed], gatewayXKeys: [xseed] } as ConsumerConfig;
  refused("Consumer", () => new Consumer(js, cc), [
    /trusted gateway "S…\(58 characters\)" is not a public server/,
    /gateway xkey "S…\(58 characters\)" is not a public curve/,
  ]);
  const ac = { trustedGateways: [nseed] } as ApproverConfig;
  refused("Approver", () => new Approver(nc, js, ac), [/trusted gateway "S…\(58 characters\)" is not a public server/]);
});
