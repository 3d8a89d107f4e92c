/**
 * Polls `GET <url><path>` (argv: url, path = /health, every-ms = 0) one request after another, a new one at
 * most every-ms after the last began (0: at once), between a parent's "start" and "stop" messages (fork IPC)
 * and answers "stop" with the latencies, ms. A process of its own, so the latencies are serve's and not the
 * bench's event loop (busy streaming the uploads it sends).
 */
import { request } from "node:http";

const url = new URL(process.argv[3] ?? "/health", process.argv[2]);
const everyMs = Number(process.argv[4] ?? 0);
const agent = new (await import("node:http")).Agent({ keepAlive: true, maxSockets: 1 });
let polling = false;
let lat = [];

function health() {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const req = request(url, { agent }, (res) => {
      res.resume();
      res.on("end", () => resolve(performance.now() - t));
    });
    req.on("error", reject);
    req.end();
  });
}

async function loop() {
  while (polling) {
    const ms = await health();
    lat.push(ms);
    if (everyMs > ms) await new Promise((r) => setTimeout(r, everyMs - ms));
  }
}

let running = Promise.resolve();
process.on("message", async (m) => {
  if (m === "start") {
    lat = [];
    polling = true;
    running = loop();
  } else if (m === "stop") {
    polling = false;
    await running;
    process.send(lat);
  } else if (m === "exit") process.exit(0);
});
