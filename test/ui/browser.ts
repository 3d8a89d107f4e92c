import { existsSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type ConsoleMessage, type Page } from "puppeteer-core";
import { tempDir } from "../helpers/temp-dir.js";

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"];

/** The Chromium to drive: `$CHROMIUM_PATH`, else Debian's package and its usual cousins; null when none is installed. */
export function findChromium(): string | null {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** Why the browser tests cannot run here, or null when they can. Printed loudly, and given to `t.skip`. */
export function browserSkipReason(): string | null {
  if (findChromium()) return null;
  const reason = `no Chromium found (${process.env.CHROMIUM_PATH ?? CANDIDATES.join(", ")}): the playground's browser tests did NOT run; install it with \`apt-get install -y chromium\` (.ci/run does) or set CHROMIUM_PATH`;
  process.stderr.write(`\n*** SKIPPED: ${reason} ***\n\n`);
  return reason;
}

/** A headless Chromium with a fresh profile. Root (CI containers) needs --no-sandbox. */
export function launchChromium(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: findChromium()!,
    headless: true,
    userDataDir: tempDir("omni-ui-profile-"),
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check"],
  });
}

/** Every console error and uncaught page exception of a page, for the "no console errors" checks. */
export class ConsoleErrors {
  readonly messages: string[] = [];

  constructor(page: Page) {
    page.on("console", (m: ConsoleMessage) => {
      if (m.type() === "error") this.messages.push(`${m.text()} @ ${m.location().url ?? "?"}`);
    });
    page.on("pageerror", (e: unknown) => this.messages.push(`uncaught: ${e instanceof Error ? e.stack : String(e)}`));
  }

  /** Removes and returns what was logged so far. */
  take(): string[] {
    return this.messages.splice(0);
  }
}
