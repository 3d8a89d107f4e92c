// The other end of bench/lib/bare-ipc.ts: answers every message at once, as a worker answers `ping`, with
// nothing else loaded (no model, no tsx), so the round trip is Node's own IPC cost.
process.on("message", (m) => process.send({ type: "reply", id: m.id, ok: true, result: { rank: 0, pid: process.pid, time: Date.now() } }));
