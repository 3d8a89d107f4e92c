import type { Server } from "node:http";

/** `::ffff:1.2.3.4` (an IPv4 client on a dual-stack socket) and `1.2.3.4` are one client. */
const clientOf = (address: string | undefined) => (address ?? "").replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");

/**
 * Closes a new connection as soon as it is accepted when its client address already holds `max` open ones,
 * so one client cannot take every connection `maxConnections` allows and lock the others out.
 */
export function limitConnectionsPerAddress(server: Server, max: number): void {
  const open = new Map<string, number>();
  server.on("connection", (socket) => {
    const client = clientOf(socket.remoteAddress);
    const held = open.get(client) ?? 0;
    if (held >= max) {
      socket.destroy();
      return;
    }
    open.set(client, held + 1);
    socket.once("close", () => {
      const left = (open.get(client) ?? 1) - 1;
      if (left > 0) open.set(client, left);
      else open.delete(client);
    });
  });
}
