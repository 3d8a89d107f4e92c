/**
 * deploy/ cannot be run here (no Docker, no Kubernetes): this test parses every manifest and checks the
 * references between them, and every CLI flag they pass against the real commands, so they cannot rot.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
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
/** How the manifests start serve: its node with single-threaded GC (docs/server.md, "Small machines"). */
const SERVE_COMMAND = ["node", "--single-threaded-gc", "bin/omni-diffusion.js", "serve"];
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

/** `redis://:<password>@host:port/db` → [, password, host, port, db]; the password is required. */
const redisUrl = (u: string) => /^redis:\/\/:([^@/]+)@([^:/@]+):(\d+)\/(\d+)$/.exec(u);

/** A stand-in Redis password for the checks below (what `openssl rand -hex 24` gives). */
const PASSWORD = "0123456789abcdef0123456789abcdef0123456789abcdef";

/**
 * Compose's variable interpolation over every string of a parsed file: `${VAR}`, `${VAR:-default}`,
 * `${VAR:?error}` (an error when unset: returned in `required`), and `$$` for a literal `$`.
 */
function interpolate(v: unknown, env: Record<string, string>, required: Set<string>): unknown {
  if (typeof v === "string") {
    return v.replace(/\$\$|\$\{(\w+)(?::([-?])([^}]*))?\}/g, (all, name: string | undefined, op: string | undefined, arg: string | undefined) => {
      if (all === "$$") return "$";
      if (op === "?") required.add(name!);
      const val = env[name!];
      if (val !== undefined && val !== "") return val;
      if (op === "?") throw new Error(`compose refuses to start: ${name} is unset (${arg})`);
      return op === "-" ? arg! : "";
    });
  }
  if (Array.isArray(v)) return v.map((x) => interpolate(x, env, required));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolate(x, env, required)]));
  return v;
}

/**
 * A container's env as the kubelet builds it: plain values with `$(VAR)` expanded from the entries above
 * them; `secretKeyRef`/`fieldRef` entries become `<secret:name:key>` and `<field:path>` placeholders.
 */
function containerEnv(c: Obj, where: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const e of (c.env ?? []) as Obj[]) {
    if (e.valueFrom?.secretKeyRef) {
      const r = e.valueFrom.secretKeyRef as Obj;
      if (r.name === "omni-redis") assert.notEqual(r.optional, true, `${where}: ${e.name} (the Redis password) is required, not optional`);
      env.set(e.name, `<secret:${r.name}:${r.key}>`);
    } else if (e.valueFrom?.fieldRef) env.set(e.name, `<field:${e.valueFrom.fieldRef.fieldPath}>`);
    else env.set(e.name, expand(String(e.value), env, where));
  }
  return env;
}

/** `$(VAR)` → its value; a reference to a variable not defined (above) fails. */
function expand(text: string, env: Map<string, string>, where: string): string {
  return text.replace(/\$\((\w+)\)/g, (_, name: string) => {
    assert.ok(env.has(name), `${where}: $(${name}) is defined in env before it is used`);
    return env.get(name)!;
  });
}

describe("deploy/ manifests", () => {
  it("the node flag the manifests start serve with is one this Node accepts", () => {
    const flags = SERVE_COMMAND.slice(1, SERVE_COMMAND.indexOf("bin/omni-diffusion.js"));
    const run = spawnSync(process.execPath, [...flags, "-e", "0"], { encoding: "utf8" });
    assert.equal(run.status, 0, `node ${flags.join(" ")}: ${run.stderr}`);
  });

  it("every YAML file parses", () => {
    const files = [join(DEPLOY, "docker-compose.yml"), ...readdirSync(join(DEPLOY, "k8s")).map((f) => join(DEPLOY, "k8s", f))];
    for (const f of files) assert.ok(docs(f).length >= 1, f);
  });

  it("docker-compose.yml: server and workers share the image, the Redis URL and the queue name; flags exist; ports match", () => {
    const [raw] = docs(join(DEPLOY, "docker-compose.yml"));
    const required = new Set<string>();
    assert.throws(() => interpolate(raw, {}, new Set()), /REDIS_PASSWORD is unset/, "compose refuses to start without a Redis password");
    const compose = interpolate(raw, { REDIS_PASSWORD: PASSWORD }, required) as Obj;
    assert.ok(required.has("REDIS_PASSWORD"));
    const { redis, server, worker } = compose.services as Record<string, Obj>;
    assert.ok(redis && server && worker, "services redis, server, worker");
    assert.equal(server!.image, worker!.image, "one image for server and workers");
    assert.deepEqual(server!.entrypoint, SERVE_COMMAND);
    const s = parseArgs(server!.command, "serve", "compose server");
    const w = parseArgs(worker!.command, "worker", "compose worker");
    const opts = JSON.parse(String(s.get("--executor-options"))) as { url: string; queue: string };
    assert.equal(s.get("--executor"), "queue");
    assert.equal(opts.url, w.get("--queue"), "server and workers use the same Redis");
    assert.equal(opts.queue, w.get("--queue-name"), "server and workers use the same queue");
    const m = redisUrl(opts.url);
    assert.ok(m, `${opts.url}: a redis:// URL with the password`);
    assert.equal(m[1], PASSWORD, "the URL carries REDIS_PASSWORD");
    assert.ok(compose.services[m[2]!], `the Redis host "${m[2]}" is a compose service`);
    assert.equal(m[3], "6379");
    // Redis requires the same password, and its health check authenticates (redis-cli exits 0 on NOAUTH: grep PONG).
    const r = redis!.command as string[];
    assert.equal(r[0], "redis-server");
    assert.equal(r[r.indexOf("--requirepass") + 1], PASSWORD, "redis-server --requirepass $REDIS_PASSWORD");
    assert.equal(redis!.environment.REDISCLI_AUTH, PASSWORD);
    assert.match(JSON.stringify(redis!.healthcheck.test), /redis-cli ping \| grep -q PONG/);
    // Networks: Redis and the workers only on the internal backend; the server bridges; only it publishes a port.
    assert.equal(compose.networks.backend.internal, true, "the backend network is internal");
    assert.deepEqual(redis!.networks, ["backend"]);
    assert.deepEqual(worker!.networks, ["backend"]);
    assert.deepEqual([...server!.networks].sort(), ["backend", "frontend"]);
    assert.equal(redis!.ports, undefined, "Redis publishes no port");
    assert.equal(worker!.ports, undefined, "the workers publish no port");
    assert.deepEqual(server!.ports, [`${s.get("--port")}:${s.get("--port")}`]);
    assert.match(JSON.stringify(server!.healthcheck.test), new RegExp(`127\\.0\\.0\\.1:${s.get("--port")}/health`));
    assert.match(JSON.stringify(worker!.healthcheck.test), new RegExp(`127\\.0\\.0\\.1:${w.get("--metrics-port")}/health`));
    assert.equal(w.get("--host"), "0.0.0.0", "the worker's metrics port is reachable from the backend network (the health check uses 127.0.0.1)");
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
        // Every $(VAR) an argument or env value uses is set in the container's env (above it, for env).
        const env = containerEnv(c, d.metadata.name);
        for (const a of [...(c.args ?? []), ...(c.command ?? [])]) expand(String(a), env, d.metadata.name);
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
    assert.deepEqual(server.command, SERVE_COMMAND);
    assert.equal(server.image, worker.image, "one image for server and workers");
    // Placeholders stand for the Secret's value, as the kubelet would substitute it.
    const secret = "<secret:omni-redis:password>";
    const args = (c: Obj, name: string) => (c.args as string[]).map((a) => expand(a, containerEnv(c, name), name));
    const s = parseArgs(args(server, "omni-server"), "serve", "k8s server");
    const w = parseArgs(args(worker, "omni-worker"), "worker", "k8s worker");
    const opts = JSON.parse(String(s.get("--executor-options"))) as { url: string; queue: string };
    assert.equal(opts.url, w.get("--queue"), "server and workers use the same Redis");
    assert.equal(opts.queue, w.get("--queue-name"));
    assert.equal(opts.queue, DEFAULT_QUEUE_NAME);
    const m = redisUrl(opts.url)!;
    assert.ok(m, `${opts.url}: a redis:// URL with the password`);
    assert.equal(m[1], secret, "the URL's password comes from the Secret");
    const redisSvc = services.get(m[2]!);
    assert.ok(redisSvc, `the Redis host "${m[2]}" is a Service`);
    assert.ok((redisSvc.spec.ports as Obj[]).some((p) => String(p.port) === m[3]), "on the URL's port");
    // Redis requires that same password; its probe authenticates (REDISCLI_AUTH) and needs a PONG.
    const redisC = deployments.get("omni-redis")!.spec.template.spec.containers[0] as Obj;
    const ra = args(redisC, "omni-redis");
    assert.equal(ra[0], "redis-server");
    assert.equal(ra[ra.indexOf("--requirepass") + 1], secret, "redis-server --requirepass <the Secret>");
    assert.equal(containerEnv(redisC, "omni-redis").get("REDISCLI_AUTH"), secret);
    assert.match(JSON.stringify(redisC.readinessProbe.exec.command), /redis-cli ping \| grep -q PONG/);
    // Only the server, the workers and KEDA's operator may connect to Redis, on its port.
    const [policy] = byKind("NetworkPolicy");
    assert.ok(policy, "a NetworkPolicy for Redis");
    const labelsOf = (name: string) => deployments.get(name)!.spec.template.metadata.labels as Record<string, string>;
    const selects = (sel: Obj, labels: Record<string, string>) => Object.entries(sel.matchLabels as Record<string, string>).every(([k, v]) => labels[k] === v);
    assert.ok(selects(policy.spec.podSelector, labelsOf("omni-redis")), "it applies to the Redis pods");
    assert.deepEqual(policy.spec.policyTypes, ["Ingress"]);
    assert.equal(policy.spec.ingress.length, 1, "one rule");
    const from = policy.spec.ingress[0].from as Obj[];
    const inNamespace = from.filter((f) => !f.namespaceSelector);
    assert.equal(inNamespace.length, 2, "two pod selectors in the namespace");
    assert.ok(inNamespace.some((f) => selects(f.podSelector, labelsOf("omni-server"))), "the server is admitted");
    assert.ok(inNamespace.some((f) => selects(f.podSelector, labelsOf("omni-worker"))), "the workers are admitted");
    for (const f of inNamespace) assert.ok(!selects(f.podSelector, labelsOf("omni-redis")) && Object.keys(f.podSelector.matchLabels).length > 0, "no catch-all selector");
    const keda = from.filter((f) => f.namespaceSelector);
    assert.deepEqual(keda, [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "keda" } }, podSelector: { matchLabels: { "app.kubernetes.io/name": "keda-operator" } } }]);
    assert.deepEqual(policy.spec.ingress[0].ports, [{ protocol: "TCP", port: Number(m[3]) }]);
    assert.equal(redisC.ports[0].containerPort, Number(m[3]));
    // The server's container port is the one --port listens on; the worker's probes use --metrics-port.
    assert.equal(String(server.ports[0].containerPort), s.get("--port"));
    assert.equal(String(worker.ports[0].containerPort), w.get("--metrics-port"));
    assert.equal(w.get("--host"), "<field:status.podIP>", "the worker's metrics listen on the pod's address only");
    // terminationGracePeriodSeconds leaves the drain its time.
    const grace = deployments.get("omni-worker")!.spec.template.spec.terminationGracePeriodSeconds as number;
    assert.ok(grace * 1000 > Number(w.get("--drain-timeout")), "the grace period outlasts --drain-timeout");

    const [scaled] = byKind("ScaledObject");
    assert.ok(scaled, "a KEDA ScaledObject");
    assert.equal(scaled.spec.scaleTargetRef.name, "omni-worker");
    assert.ok(scaled.spec.minReplicaCount >= 1, "at least one worker: the server's health needs a live worker");
    const trigger = (scaled.spec.triggers as Obj[]).find((t) => t.type === "redis")!;
    assert.equal(trigger.metadata.address, `${m[2]}:${m[3]}`, "KEDA reads the same Redis");
    assert.equal(trigger.metadata.databaseIndex, m[4]);
    const auth = byKind("TriggerAuthentication").find((a) => a.metadata.name === trigger.authenticationRef?.name);
    assert.ok(auth, "KEDA authenticates to Redis through a TriggerAuthentication");
    assert.deepEqual(auth.spec.secretTargetRef, [{ parameter: "password", name: "omni-redis", key: "password" }], "with the same Secret");
    assert.equal(trigger.metadata.listName, `bull:${opts.queue}:wait`, "KEDA reads BullMQ's wait list of the same queue");
    assert.equal(trigger.metadata.listLength, w.get("--concurrency"), "one worker per --concurrency waiting jobs");
  });
});
