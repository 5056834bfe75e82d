// The clock skew of replies and decision notices, read as the Go SDK
// reads WaitOptions.Skew: there zero is also the unset value, so 0 and
// absent both mean the default here.
import { ConfigError } from "../errors.js";

/** WAIT_SKEW_MS is the default skew on reply and notice tokens (30 s, the Go SDK's DefaultSkew). */
export const WAIT_SKEW_MS = 30_000;

/**
 * waitSkewMs returns the skew to verify reply and notice tokens with:
 * skewMs, or WAIT_SKEW_MS when it is absent or 0. A negative or
 * non-finite skew is a ConfigError.
 */
export function waitSkewMs(skewMs: number | undefined): number {
  if (skewMs === undefined || skewMs === 0) {
    return WAIT_SKEW_MS;
  }
  if (!Number.isFinite(skewMs) || skewMs < 0) {
    throw new ConfigError(`invalid config: skew ${skewMs} ms is negative or not a number`);
  }
  return skewMs;
}
