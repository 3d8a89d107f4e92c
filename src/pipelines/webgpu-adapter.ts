import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import protobuf from "protobufjs";
import { ConfigError } from "../errors/omni-error.js";

/** What a user without a working adapter installs: one sentence, used by every webgpu error. */
export const WEBGPU_INSTALL_HINT =
  "install the Vulkan driver for your GPU (NVIDIA, AMD or Intel; Metal and D3D12 need nothing on macOS and Windows); " +
  "without a GPU on Debian/Ubuntu, mesa-vulkan-drivers >= 24 gives a software adapter (Debian 12: from bookworm-backports); " +
  "see docs/models.md#gpu-without-cuda";

/** The outcome of {@link probeWebGpu}. */
export interface WebGpuProbe {
  /** An adapter was found and computed 2·x correctly on it. */
  ok: boolean;
  /** Why not, in one line (Dawn's and the Vulkan loader's own words, without their stack lines). */
  reason?: string;
  /** What the probe process wrote to stderr (Dawn's and Mesa's warnings), for `info`. */
  stderr: string;
}

/**
 * A one-node ONNX model, y = x + x over float[4]: the smallest graph that makes the WebGPU provider open an
 * adapter, compile a shader and run it. Written with protobufjs's writer (onnx.proto field numbers).
 */
export function probeModelBytes(): Uint8Array {
  const w = () => protobuf.Writer.create();
  const tensorValue = (name: string) => {
    const dim = w().uint32((1 << 3) | 0).int64(4).finish(); // Dimension.dim_value
    const shape = w().uint32((1 << 3) | 2).bytes(dim).finish(); // TensorShapeProto.dim
    const tensor = w().uint32((1 << 3) | 0).int32(1).uint32((2 << 3) | 2).bytes(shape).finish(); // elem_type FLOAT, shape
    const type = w().uint32((1 << 3) | 2).bytes(tensor).finish(); // TypeProto.tensor_type
    return w().uint32((1 << 3) | 2).string(name).uint32((2 << 3) | 2).bytes(type).finish(); // ValueInfoProto
  };
  const node = w().uint32((1 << 3) | 2).string("x").uint32((1 << 3) | 2).string("x").uint32((2 << 3) | 2).string("y").uint32((4 << 3) | 2).string("Add").finish();
  const graph = w()
    .uint32((1 << 3) | 2).bytes(node) // GraphProto.node
    .uint32((2 << 3) | 2).string("webgpu-probe") // name
    .uint32((11 << 3) | 2).bytes(tensorValue("x")) // input
    .uint32((12 << 3) | 2).bytes(tensorValue("y")) // output
    .finish();
  const opset = w().uint32((1 << 3) | 2).string("").uint32((2 << 3) | 0).int64(17).finish();
  return w()
    .uint32((1 << 3) | 0).int64(8) // ir_version
    .uint32((7 << 3) | 2).bytes(graph)
    .uint32((8 << 3) | 2).bytes(opset) // opset_import
    .finish();
}

/**
 * The probe process: opens the WebGPU provider on {@link probeModelBytes} and prints one JSON line. It runs apart
 * because Dawn and the Vulkan loader write their own warnings and stack lines to the process's stderr when no
 * adapter exists; kept apart, the user sees only our one-line error.
 */
const PROBE_SCRIPT = `
const [model, ortPath] = process.argv.slice(-2);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
try {
  const ns = await import(ortPath);
  const ort = ns.default ?? ns;
  const s = await ort.InferenceSession.create(Buffer.from(model, "base64"), { executionProviders: ["webgpu"], logSeverityLevel: 3 });
  const out = await s.run({ x: new ort.Tensor("float32", Float32Array.of(1, 2, 3, 4), [4]) });
  say({ ok: true, y: Array.from(out.y.data) });
} catch (e) {
  say({ ok: false, message: String(e && e.message || e) });
}
process.exit(0);
`;

/** Options of {@link probeWebGpu}. */
export interface WebGpuProbeOptions {
  /** The probe's environment (default: this process's); tests hide the Vulkan drivers with `VK_ICD_FILENAMES`. */
  env?: NodeJS.ProcessEnv;
  /** Safety net for a driver that hangs; the software adapter answers in about a second. */
  timeoutMs?: number;
}

/** Runs the probe process once: whether this machine has a WebGPU adapter onnxruntime can compute on. */
export function probeWebGpu(opts: WebGpuProbeOptions = {}): Promise<WebGpuProbe> {
  const ortPath = createRequire(import.meta.url).resolve("onnxruntime-node");
  const model = Buffer.from(probeModelBytes()).toString("base64");
  const child = spawn(process.execPath, ["--input-type=module", "-e", PROBE_SCRIPT, model, ortPath], {
    env: opts.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-16_384)));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    const finish = (fallback: string) => {
      clearTimeout(timer);
      resolve(readProbe(stdout, stderr, fallback));
    };
    child.on("error", (err) => finish(`the probe process could not start: ${err.message}`));
    child.on("close", (code, signal) => finish(signal ? `the probe process was killed (${signal}): the driver did not answer` : `the probe process exited ${code} without an answer`));
  });
}

function readProbe(stdout: string, stderr: string, fallback: string): WebGpuProbe {
  let answer: { ok?: boolean; y?: number[]; message?: string } | null = null;
  try {
    answer = JSON.parse(stdout.trim().split("\n").pop() ?? "");
  } catch {
    answer = null;
  }
  if (answer?.ok) {
    const right = answer.y?.length === 4 && answer.y.every((v, i) => v === 2 * (i + 1));
    return right ? { ok: true, stderr } : { ok: false, reason: `the adapter computed 2·[1,2,3,4] as [${answer.y?.join(", ")}]`, stderr };
  }
  return { ok: false, reason: answer?.message ? adapterReason(answer.message, stderr) : fallback, stderr };
}

/**
 * onnxruntime's message with its source path cut ("…webgpu_context.cc:136 … was false. Failed to get a WebGPU
 * adapter: No supported adapters") and the Vulkan loader's first complaint, e.g. "Found no drivers!".
 */
export function adapterReason(message: string, stderr: string): string {
  const ort = /Failed to get a WebGPU adapter[^\n]*/.exec(message)?.[0] ?? message.split("\n")[0]!.replace(/^.*?\.cc:\d+ /, "");
  const vk = /vkCreateInstance: ([^\n]+)/.exec(stderr)?.[1];
  return vk ? `${ort.trim()}; Vulkan: ${vk.trim()}` : ort.trim();
}

/** The ConfigError for a machine without a usable adapter. */
export function webGpuUnavailableError(reason: string, cause?: unknown): ConfigError {
  return new ConfigError(`device "webgpu": no usable WebGPU adapter (${reason}); ${WEBGPU_INSTALL_HINT}`, {
    field: "device",
    data: { reason },
    ...(cause !== undefined ? { cause } : {}),
  });
}

/**
 * Mesa's Wayland and X11 surface code, loaded with the Vulkan driver, complains on stderr ("error:
 * XDG_RUNTIME_DIR is invalid or not set") when the variable is missing, as under systemd services and in
 * containers. Headless compute needs no display: an empty private runtime folder keeps it quiet.
 */
export function quietVulkanEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  if (env.XDG_RUNTIME_DIR) return;
  const dir = mkdtempSync(join(tmpdir(), "omni-xdg-")); // mkdtemp makes it 0700, as the spec requires
  env.XDG_RUNTIME_DIR = dir;
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
}

let checked: Promise<WebGpuProbe> | null = null;

/**
 * Throws {@link webGpuUnavailableError} when no adapter works here; probed once per process (a second session
 * on the same machine finds the same adapters).
 */
export async function assertWebGpuAdapter(): Promise<void> {
  quietVulkanEnvironment();
  checked ??= probeWebGpu();
  const probe = await checked;
  if (!probe.ok) throw webGpuUnavailableError(probe.reason ?? "unknown");
}
