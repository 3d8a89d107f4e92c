/**
 * Answers a hostile or broken Hub gives, as handlers for {@link FakeHub.fileFaults} and {@link FakeHub.listingFaults}.
 * Every endless answer is bounded by the test itself (`cap`): if the puller failed to stop, the test fails on what
 * it saw instead of filling the disk.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { FakeListing, FaultedFile, FileFault, ListingFault } from "./fake-hub.js";

const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/** Bytes a pumping handler managed to hand to its socket. */
export interface Pumped {
  sent: number;
  /** Set once the handler stopped: the client went away or the cap was reached. */
  done: Promise<"client-gone" | "cap">;
}

/**
 * Writes `CHUNK`s with backpressure until `cap` bytes or the client goes away; `beforeChunk` runs before each one
 * (the tests measure the partial file there). At the cap it ends the body, or cuts the connection with `cut`.
 */
function pump(res: ServerResponse, cap: number, stats: Pumped & { finish?: (why: "client-gone" | "cap") => void }, beforeChunk?: () => void, cut = false): void {
  let gone = false;
  res.on("close", () => {
    gone = true;
    stats.finish?.("client-gone");
  });
  const next = (): void => {
    while (!gone && stats.sent < cap) {
      beforeChunk?.();
      const n = Math.min(CHUNK.length, cap - stats.sent);
      stats.sent += n;
      if (!res.write(CHUNK.subarray(0, n))) return void res.once("drain", next);
    }
    if (gone) return;
    stats.finish?.("cap");
    if (cut) res.socket?.destroy();
    else res.end();
  };
  next();
}

function newStats(): Pumped & { finish?: (why: "client-gone" | "cap") => void } {
  const stats: Pumped & { finish?: (why: "client-gone" | "cap") => void } = { sent: 0, done: Promise.resolve("cap") };
  stats.done = new Promise((resolve) => (stats.finish = resolve));
  return stats;
}

/** Status line and range headers for an answer that pretends to be the (rest of the) listed file. */
function rangeHeaders(file: FaultedFile): { status: number; headers: Record<string, string> } {
  if (file.rangeStart > 0) {
    return { status: 206, headers: { ...file.headers, "content-range": `bytes ${file.rangeStart}-${file.listedSize - 1}/${file.listedSize}` } };
  }
  return { status: 200, headers: file.headers };
}

/**
 * A body that never ends (chunked, no `Content-Length`), bounded at `cap` bytes by the test. A ranged request
 * gets a 206 that claims the rest of the listed file and then streams on just the same.
 */
export function endlessFile(cap: number, beforeChunk?: () => void): { fault: FileFault; stats: Pumped } {
  const stats = newStats();
  const fault: FileFault = (_req: IncomingMessage, res: ServerResponse, file: FaultedFile) => {
    const { status, headers } = rangeHeaders(file);
    res.writeHead(status, headers);
    pump(res, cap, stats, beforeChunk);
  };
  return { fault, stats };
}

/** An answer whose `Content-Length` says `claimed` bytes; it streams up to `min(claimed, cap)` and cuts the connection short of a larger claim. */
export function claimsLength(claimed: number, cap: number, beforeChunk?: () => void): { fault: FileFault; stats: Pumped } {
  const stats = newStats();
  const fault: FileFault = (_req, res, file) => {
    const { status, headers } = rangeHeaders(file);
    res.writeHead(status, { ...headers, "content-length": String(claimed) });
    pump(res, Math.min(claimed, cap), stats, beforeChunk, claimed > cap);
  };
  return { fault, stats };
}

/** A gate a test opens by hand, and a latch the server trips when it starts holding. */
export interface Hold {
  /** Resolves once the server has sent what it sends and is holding the answer open. */
  holding: Promise<void>;
  /** Lets the held answer go (the server then cuts the connection). */
  release(): void;
}

function newHold(): Hold & { held(): void; released: Promise<void> } {
  let held!: () => void;
  let release!: () => void;
  const holding = new Promise<void>((r) => (held = r));
  const released = new Promise<void>((r) => (release = r));
  return { holding, release, held, released };
}

/** Sends the headers (the real length) and the first `after` bytes of the file, then holds the connection open until released. */
export function stallFile(after: number): { fault: FileFault; hold: Hold } {
  const hold = newHold();
  const fault: FileFault = (_req, res, file) => {
    res.writeHead(200, { ...file.headers, "content-length": String(file.content.length) });
    res.write(file.content.subarray(0, after), () => hold.held());
    void hold.released.then(() => res.socket?.destroy());
  };
  return { fault, hold };
}

/** Receives the listing request and answers nothing (not even headers) until released. */
export function stallListing(): { fault: ListingFault; hold: Hold } {
  const hold = newHold();
  const fault: ListingFault = (_req, res) => {
    hold.held();
    void hold.released.then(() => res.socket?.destroy());
  };
  return { fault, hold };
}

/** The listing rewritten by `edit` (which may add, drop or change siblings). */
export function editedListing(edit: (listing: FakeListing) => unknown): ListingFault {
  return (_req, res, listing) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(edit(structuredClone(listing))));
  };
}

/**
 * A valid listing of about `bytes` bytes: the real siblings, then padding siblings (`pad/<n>.bin`, which no
 * pipeline needs) streamed with backpressure. With `withLength` it announces its length up front.
 */
export function hugeListing(bytes: number, withLength = false): { fault: ListingFault; stats: Pumped } {
  const stats = newStats();
  const fault: ListingFault = (_req, res, listing) => {
    const head = Buffer.from(JSON.stringify({ id: listing.id, sha: listing.sha, siblings: listing.siblings }).slice(0, -2));
    const pad = (n: number) => `,{"rfilename":"pad/${String(n).padStart(9, "0")}.bin","size":1,"blobId":"${"0".repeat(40)}"}`;
    const per = Buffer.byteLength(pad(0));
    const count = Math.max(0, Math.floor((bytes - head.length - 2) / per));
    const total = head.length + count * per + 2;
    res.writeHead(200, { "content-type": "application/json", ...(withLength ? { "content-length": String(total) } : {}) });
    let gone = false;
    res.on("close", () => {
      gone = true;
      stats.finish?.("client-gone");
    });
    res.write(head);
    stats.sent = head.length;
    let i = 0;
    const next = (): void => {
      while (!gone && i < count) {
        const lines: string[] = [];
        for (let k = 0; k < 512 && i < count; k++) lines.push(pad(i++));
        const chunk = lines.join("");
        stats.sent += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", next);
      }
      if (gone) return;
      stats.sent += 2;
      res.end("]}");
      stats.finish?.("cap");
    };
    next();
  };
  return { fault, stats };
}
