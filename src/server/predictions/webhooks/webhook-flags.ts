/**
 * `serve`'s webhook flags as dispatcher options. Lives here, not in the CLI, so the rule (what a valid secret
 * is) has one home; the serve command calls it before anything starts, so a bad secret is a one-line error.
 */
import { parseWebhookSecret } from "./webhook-secret.js";

/** The flags as commander parses them. */
export interface WebhookFlags {
  /** `--webhook-secret whsec_...` (or the env the command reads it from). */
  webhookSecret?: string;
  /** `--allow-private-webhooks`. */
  allowPrivateWebhooks?: boolean;
}

/** The part of the dispatcher's options the flags decide; throws a ConfigError naming `--webhook-secret`. */
export function webhookOptionsFromFlags(flags: WebhookFlags): { secret?: string; allowPrivate: boolean } {
  const allowPrivate = flags.allowPrivateWebhooks === true;
  return flags.webhookSecret === undefined ? { allowPrivate } : { secret: parseWebhookSecret(flags.webhookSecret), allowPrivate };
}
