import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Which nodes of a WebGPU session run on the CPU, read from onnxruntime's profile of the session's first run.
 *
 * onnxruntime decides placement when it creates a session, but tells only its own log (verbose level, written by
 * native code straight to stderr, which Node cannot read back). Its profiler, on the other hand, writes a JSON file
 * naming each node's execution provider: a WebGPU session is created with profiling on, the first run is profiled,
 * profiling is ended (later runs are not profiled), and the file is summarised and deleted.
 */
export interface NodePlacement {
  /** Nodes that ran, by provider (e.g. `WebGpuExecutionProvider`, `CPUExecutionProvider`). */
  byProvider: Record<string, number>;
  /** Nodes on the CPU provider, by operator type, most first. */
  cpuOps: [op: string, count: number][];
  /** Names of the nodes on the CPU provider, in run order. */
  cpuNodes: string[];
}

interface ProfileEvent {
  cat?: string;
  name?: string;
  args?: { provider?: string; op_name?: string };
}

const CPU = "CPUExecutionProvider";

/** Reads a profile (onnxruntime's chrome-trace JSON array): one entry per node that ran. */
export function summarisePlacement(events: ProfileEvent[]): NodePlacement {
  const seen = new Set<string>();
  const byProvider: Record<string, number> = {};
  const ops = new Map<string, number>();
  const cpuNodes: string[] = [];
  for (const e of events) {
    const provider = e.args?.provider;
    if (e.cat !== "Node" || !provider || !e.name?.endsWith("_kernel_time")) continue;
    const node = e.name.slice(0, -"_kernel_time".length);
    if (seen.has(node)) continue;
    seen.add(node);
    byProvider[provider] = (byProvider[provider] ?? 0) + 1;
    if (provider !== CPU) continue;
    cpuNodes.push(node);
    const op = e.args?.op_name ?? "?";
    ops.set(op, (ops.get(op) ?? 0) + 1);
  }
  return { byProvider, cpuOps: [...ops].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])), cpuNodes };
}

/** Nodes listed by name in the log line; the rest are counted. */
const NAMED_NODES = 12;

/** The log line: how many nodes fell back, of which operator types, and the first few by name. */
export function describePlacement(component: string, path: string, p: NodePlacement): string {
  const total = Object.values(p.byProvider).reduce((a, b) => a + b, 0);
  const cpu = p.byProvider[CPU] ?? 0;
  const ops = p.cpuOps.map(([op, n]) => `${op} ${n}`).join(", ");
  const names = p.cpuNodes.slice(0, NAMED_NODES).join(", ") + (p.cpuNodes.length > NAMED_NODES ? `, … ${p.cpuNodes.length - NAMED_NODES} more` : "");
  return (
    `webgpu: ${component} (${path}) runs ${cpu} of ${total} nodes on the CPU (${ops}): ${names}. ` +
    `onnxruntime keeps shape arithmetic on the CPU on purpose; other operators there have no WebGPU kernel`
  );
}

/** Models (component and file) whose placement was already logged: once per model per process, sleep/wake included. */
const logged = new Set<string>();

/** Profile folders not yet deleted, removed at exit (a session that never ran, a process that exits mid-run). */
const openDirs = new Set<string>();
let exitHook = false;

/** One WebGPU session's placement report: profiling options for its creation, a summary after its first run. */
export class PlacementReport {
  readonly #component: string;
  readonly #path: string;
  readonly #dir: string;
  readonly #log: (line: string) => void;

  /** Null when this model's placement was already logged in this process: no profiling then. */
  static for(component: string, path: string, log: (line: string) => void = emit): PlacementReport | null {
    return logged.has(`${component}\0${path}`) ? null : new PlacementReport(component, path, log);
  }

  private constructor(component: string, path: string, log: (line: string) => void) {
    this.#component = component;
    this.#path = path;
    this.#log = log;
    this.#dir = mkdtempSync(join(tmpdir(), "omni-webgpu-profile-"));
    openDirs.add(this.#dir);
    if (!exitHook) {
      exitHook = true;
      process.once("exit", () => openDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
    }
  }

  /** Session options that profile the session into this report's folder. */
  get sessionOptions(): { enableProfiling: true; profileFilePrefix: string } {
    return { enableProfiling: true, profileFilePrefix: join(this.#dir, "profile") };
  }

  /** After the first run: ends profiling, logs the fallbacks (if any), deletes the profile. Never throws. */
  finish(session: { endProfiling(): void }): void {
    try {
      session.endProfiling();
      const file = readdirSync(this.#dir).find((f) => f.endsWith(".json"));
      if (!file) return;
      const placement = summarisePlacement(JSON.parse(readFileSync(join(this.#dir, file), "utf8")) as ProfileEvent[]);
      logged.add(`${this.#component}\0${this.#path}`);
      if (placement.cpuNodes.length) this.#log(describePlacement(this.#component, this.#path, placement));
    } catch (err) {
      this.#log(`webgpu: ${this.#component}: could not read which nodes run on the CPU (${(err as Error).message})`);
    } finally {
      this.discard();
    }
  }

  /** Deletes the profile folder (a session that never ran, or was released). */
  discard(): void {
    openDirs.delete(this.#dir);
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function emit(line: string): void {
  process.emitWarning(line, { type: "WebGpuFallback" });
}
