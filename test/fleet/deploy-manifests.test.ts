/**
 * deploy/ cannot be run here (no Docker, no Kubernetes): this test parses every manifest and checks the
 * references between them, and every CLI flag they pass against the real commands, so they cannot rot.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { parseAllDocuments } from "yaml";
import { addServeCommand } from "../../src/cli/serve-command.js";
import { addWorkerCommand } from "../../src/cli/worker-command.js";
import { DEFAULT_QUEUE_NAME } from "../../src/protocol/queue-protocol.js";

const DEPLOY = fileURLToPath(new URL("../../deploy", import.meta.url));
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML, checked field by field below
type Obj = Record<string, any>;

function docs(file: string): Obj[] {
  const parsed = parseAllDocuments(readFileSync(file, "utf8"));
  for (const d of parsed) assert.deepEqual(d.errors, [], `${file}: YAML errors`);
  return parsed.map((d) => d.toJS() as Obj).filter(Boolean);
}

/** Long flags (and whether each takes a value) of one CLI command, from the real command definitions. */
function flagsOf(name: "serve" | "worker"): Map<string, boolean> {
  const program = new Command();
  addServeCommand(program);
  addWorkerCommand(program);
  const cmd = program.commands.find((c) => c.name() === name)!;
  return new Map(cmd.options.map((o) => [o.long!, o.required || o.optional]));
}

/** `--flag value` pairs of an argument list, checked against the command: unknown flags fail. */
function parseArgs(args: string[], command: "serve" | "worker", where: string): Map<string, string | true> {
  const known = flagsOf(command);
  const out = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const flag = String(args[i]);
    assert.ok(known.has(flag), `${where}: "${flag}" is not a flag of omni-diffusion ${command}`);
    if (known.get(flag)) out.set(flag, String(args[++i]));
    else out.set(flag, true);
  }
  return out;
}

const redisUrl = (u: string) => /^redis:\/\/([^:/]+):(\d+)\/(\d+)$/.exec(u);

describe("deploy/ manifests", () => {
  it("every YAML file parses", () => {
    const files = [join(DEPLOY, "docker-compose.yml"), ...readdirSync(join(DEPLOY, "k8s")).map((f) => join(DEPLOY, "k8s", f))];
    for (const f of files) assert.ok(docs(f).length >= 1, f);
  });

  it("docker-compose.yml: server and workers share the image, the Redis URL and the queue name; flags exist; ports match", () => {
    const [compose] = docs(join(DEPLOY, "docker-compose.yml"));
    const { redis, server, worker } = compose!.services as Record<string, Obj>;
    assert.ok(redis && server && worker, "services redis, server, worker");
    assert.equal(server!.image, worker!.image, "one image for server and workers");
    assert.deepEqual(server!.entrypoint, ["node", "bin/omni-diffusion.js", "serve"]);
    const s = parseArgs(server!.command, "serve", "compose server");
    const w = parseArgs(worker!.command, "worker", "compose worker");
    const opts = JSON.parse(String(s.get("--executor-options"))) as { url: string; queue: string };
    assert.equal(s.get("--executor"), "queue");
    assert.equal(opts.url, w.get("--queue"), "server and workers use the same Redis");
    assert.equal(opts.queue, w.get("--queue-name"), "server and workers use the same queue");
    const m = redisUrl(opts.url);
    assert.ok(m, opts.url);
    assert.ok(compose!.services[m[1]!], `the Redis host "${m[1]}" is a compose service`);
    assert.equal(m[2], "6379");
    assert.deepEqual(server!.ports, [`${s.get("--port")}:${s.get("--port")}`]);
    assert.match(JSON.stringify(server!.healthcheck.test), new RegExp(`127\\.0\\.0\\.1:${s.get("--port")}/health`));
    assert.match(JSON.stringify(worker!.healthcheck.test), new RegExp(`127\\.0\\.0\\.1:${w.get("--metrics-port")}/health`));
    assert.equal(w.get("--host"), "0.0.0.0", "the worker's metrics port is reachable from outside its container");
    for (const svc of [server!, worker!]) assert.equal(svc.depends_on.redis.condition, "service_healthy");
  });

  it("Kubernetes: Services select Deployments, probes and ports line up, env feeds the args, KEDA scales the worker on its queue", () => {
    const all = readdirSync(join(DEPLOY, "k8s")).flatMap((f) => docs(join(DEPLOY, "k8s", f)));
    const byKind = (kind: string) => all.filter((o) => o.kind === kind);
    const deployments = new Map(byKind("Deployment").map((d) => [d.metadata.name as string, d]));
    const services = new Map(byKind("Service").map((s) => [s.metadata.name as string, s]));
    for (const name of ["omni-server", "omni-worker", "omni-redis"]) assert.ok(deployments.has(name), `Deployment ${name}`);

    for (const d of deployments.values()) {
      const labels = d.spec.template.metadata.labels as Record<string, string>;
      for (const [k, v] of Object.entries(d.spec.selector.matchLabels as Record<string, string>)) assert.equal(labels[k], v, `${d.metadata.name}: selector matches its pods`);
      for (const c of d.spec.template.spec.containers as Obj[]) {
        assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${d.metadata.name}/${c.name}: resource requests`);
        const portNames = new Set((c.ports ?? []).map((p: Obj) => p.name));
        const portNumbers = new Set((c.ports ?? []).map((p: Obj) => p.containerPort));
        for (const probe of [c.readinessProbe, c.livenessProbe].filter(Boolean)) {
          if (!probe.httpGet) continue;
          assert.equal(probe.httpGet.path, "/health", `${d.metadata.name}: probes on /health`);
          assert.ok(portNames.has(probe.httpGet.port) || portNumbers.has(probe.httpGet.port), `${d.metadata.name}: probe port ${probe.httpGet.port} is declared`);
        }
        // Every $(VAR) an argument uses is set in the container's env.
        const env = new Set((c.env ?? []).map((e: Obj) => e.name));
        for (const a of [...(c.args ?? []), ...(c.command ?? [])]) for (const m of String(a).matchAll(/\$\((\w+)\)/g)) assert.ok(env.has(m[1]), `${d.metadata.name}: $(${m[1]}) is in env`);
      }
    }
    for (const s of services.values()) {
      const target = [...deployments.values()].find((d) => Object.entries(s.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v));
      assert.ok(target, `Service ${s.metadata.name} selects a Deployment`);
      const ports = (target.spec.template.spec.containers as Obj[]).flatMap((c) => c.ports ?? []);
      for (const p of s.spec.ports as Obj[]) assert.ok(ports.some((cp: Obj) => cp.name === p.targetPort || cp.containerPort === p.targetPort), `Service ${s.metadata.name}: targetPort ${p.targetPort} exists`);
    }

    const server = deployments.get("omni-server")!.spec.template.spec.containers[0] as Obj;
    const worker = deployments.get("omni-worker")!.spec.template.spec.containers[0] as Obj;
    assert.equal(server.image, worker.image, "one image for server and workers");
    const envOf = (c: Obj, name: string) => (c.env as Obj[]).find((e) => e.name === name)?.value as string;
    const s = parseArgs(server.args, "serve", "k8s server");
    const w = parseArgs(worker.args, "worker", "k8s worker");
    const opts = JSON.parse(String(s.get("--executor-options")).replace("$(OMNI_QUEUE_URL)", envOf(server, "OMNI_QUEUE_URL"))) as { url: string; queue: string };
    const workerUrl = String(w.get("--queue")).replace("$(OMNI_QUEUE_URL)", envOf(worker, "OMNI_QUEUE_URL"));
    assert.equal(opts.url, workerUrl, "server and workers use the same Redis");
    assert.equal(opts.queue, w.get("--queue-name"));
    assert.equal(opts.queue, DEFAULT_QUEUE_NAME);
    const m = redisUrl(opts.url)!;
    const redisSvc = services.get(m[1]!);
    assert.ok(redisSvc, `the Redis host "${m[1]}" is a Service`);
    assert.ok((redisSvc.spec.ports as Obj[]).some((p) => String(p.port) === m[2]), "on the URL's port");
    // The server's container port is the one --port listens on; the worker's probes use --metrics-port.
    assert.equal(String(server.ports[0].containerPort), s.get("--port"));
    assert.equal(String(worker.ports[0].containerPort), w.get("--metrics-port"));
    assert.equal(w.get("--host"), "0.0.0.0");
    // terminationGracePeriodSeconds leaves the drain its time.
    const grace = deployments.get("omni-worker")!.spec.template.spec.terminationGracePeriodSeconds as number;
    assert.ok(grace * 1000 > Number(w.get("--drain-timeout")), "the grace period outlasts --drain-timeout");

    const [scaled] = byKind("ScaledObject");
    assert.ok(scaled, "a KEDA ScaledObject");
    assert.equal(scaled.spec.scaleTargetRef.name, "omni-worker");
    assert.ok(scaled.spec.minReplicaCount >= 1, "at least one worker: the server's health needs a live worker");
    const trigger = (scaled.spec.triggers as Obj[]).find((t) => t.type === "redis")!;
    assert.equal(trigger.metadata.address, `${m[1]}:${m[2]}`, "KEDA reads the same Redis");
    assert.equal(trigger.metadata.databaseIndex, m[3]);
    assert.equal(trigger.metadata.listName, `bull:${opts.queue}:wait`, "KEDA reads BullMQ's wait list of the same queue");
    assert.equal(trigger.metadata.listLength, w.get("--concurrency"), "one worker per --concurrency waiting jobs");
  });
});
