import type { ElemType, SmallGraph, ValueSpec } from "./onnx-graph/small-graph.js";
import type { NodeMsg } from "./onnx-graph/proto-wire.js";
import { castTo } from "./device-tensors.js";

/**
 * The two small graphs around each UNet call on the device (see device-step.ts). Their shape depends on the call's
 * make-up (samples, which use guidance, which sampler runs where), so they are built per make-up and cached by key.
 */

/** One sample of a UNet call: its rows (2 with classifier-free guidance) and where its sampler runs. */
export interface SampleSlot {
  cfg: boolean;
  /** `device`: x' = a·x + b·ε (+ noise) on the device; `host`: ε comes back to the host's sampler. */
  mode: "device" | "host";
  noise: boolean;
  /** Also output its predicted clean sample x0 = pa·x + pb·ε (for previews). */
  x0?: boolean;
  /** Index of its state's text embeddings among the call's `ctx` inputs. */
  ctx: number;
}

const LATENT = ["one", "c", "h", "w"];

function latent(name: string): ValueSpec {
  return { name, elem: "float32", dims: LATENT };
}

function concat(inputs: string[], output: string): NodeMsg {
  return inputs.length === 1 ? { opType: "Identity", input: inputs, output: [output] } : { opType: "Concat", input: inputs, output: [output], attribute: [{ name: "axis", type: 2, i: 0 }] };
}

export function slotsKey(slots: SampleSlot[]): string {
  return slots.map((s) => `${s.cfg ? 2 : 1}${s.mode[0]}${s.noise ? "n" : ""}${s.x0 ? "p" : ""}${s.ctx}`).join(",");
}

/**
 * Gather: the UNet's `sample` (each sample's latents, twice with guidance, times its sampler's input scale `s`,
 * in the UNet's float type) and `encoder_hidden_states` (uncond then cond per guided sample) from per-sample and
 * per-request device tensors: the latents and embeddings never pass through the host.
 */
export function gatherGraph(slots: SampleSlot[], ctxCount: number, sampleElem: ElemType, ctxElem: ElemType): SmallGraph {
  const rows: string[] = [];
  const ctxRows: string[] = [];
  slots.forEach((s, i) => {
    if (s.cfg) {
      rows.push(`x${i}`);
      ctxRows.push(`u${s.ctx}`);
    }
    rows.push(`x${i}`);
    ctxRows.push(`c${s.ctx}`);
  });
  const ctxInputs: ValueSpec[] = [];
  for (let j = 0; j < ctxCount; j++) {
    if (ctxRows.includes(`u${j}`)) ctxInputs.push({ name: `u${j}`, elem: ctxElem, dims: ["one", "tokens", "dim"] });
    ctxInputs.push({ name: `c${j}`, elem: ctxElem, dims: ["one", "tokens", "dim"] });
  }
  const nodes: NodeMsg[] = [concat(rows, "xs"), { opType: "Mul", input: ["xs", "s"], output: [sampleElem === "float32" ? "sample" : "scaled"] }, concat(ctxRows, "ehs")];
  if (sampleElem !== "float32") nodes.push({ opType: "Cast", input: ["scaled"], output: ["sample"], attribute: [castTo(sampleElem)] });
  return {
    name: "gather",
    inputs: [...slots.map((_, i) => latent(`x${i}`)), { name: "s", elem: "float32", dims: ["rows", 1, 1, 1] }, ...ctxInputs],
    outputs: [
      { name: "sample", elem: sampleElem, dims: ["rows", "c", "h", "w"] },
      { name: "ehs", elem: ctxElem, dims: ["rows", "tokens", "dim"] },
    ],
    nodes,
  };
}

/**
 * Step: splits the UNet's output into rows, applies guidance (u + g·(c − u)) and, for samples whose sampler runs
 * here, the step x' = a·x + b·ε + noise (noise drawn on the host, scaled by its σ_up: the same stream as the CPU
 * path). Outputs `y{i}` (new latents, kept on the device) or `e{i}` (guided ε, read back for a host sampler).
 */
export function stepGraph(slots: SampleSlot[], predElem: ElemType): SmallGraph {
  const rows = slots.reduce((n, s) => n + (s.cfg ? 2 : 1), 0);
  const inputs: ValueSpec[] = [{ name: "pred", elem: predElem, dims: [rows, "c", "h", "w"] }];
  const outputs: ValueSpec[] = [];
  const nodes: NodeMsg[] = [];
  const pred = predElem === "float32" ? "pred" : "pred32";
  if (predElem !== "float32") nodes.push({ opType: "Cast", input: ["pred"], output: ["pred32"], attribute: [castTo("float32")] });
  const rowNames = Array.from({ length: rows }, (_, r) => `r${r}`);
  if (rows === 1) nodes.push({ opType: "Identity", input: [pred], output: ["r0"] });
  else {
    nodes.push({ opType: "Constant", input: [], output: ["splits"], attribute: [{ name: "value", type: 4, t: { dims: [rows], dataType: 7, int64Data: rowNames.map(() => 1) } }] });
    nodes.push({ opType: "Split", input: [pred, "splits"], output: rowNames, attribute: [{ name: "axis", type: 2, i: 0 }] });
  }
  let r = 0;
  slots.forEach((s, i) => {
    let eps = `r${r}`;
    if (s.cfg) {
      const [u, c] = [`r${r}`, `r${r + 1}`];
      inputs.push({ name: `g${i}`, elem: "float32", dims: [1] });
      nodes.push({ opType: "Sub", input: [c, u], output: [`d${i}`] }, { opType: "Mul", input: [`d${i}`, `g${i}`], output: [`gd${i}`] }, { opType: "Add", input: [u, `gd${i}`], output: [`eps${i}`] });
      eps = `eps${i}`;
    }
    r += s.cfg ? 2 : 1;
    if (s.mode === "host") {
      nodes.push({ opType: "Identity", input: [eps], output: [`e${i}`] });
      outputs.push(latent(`e${i}`));
      return;
    }
    inputs.push(latent(`x${i}`), { name: `a${i}`, elem: "float32", dims: [1] }, { name: `b${i}`, elem: "float32", dims: [1] });
    nodes.push({ opType: "Mul", input: [`x${i}`, `a${i}`], output: [`ax${i}`] }, { opType: "Mul", input: [eps, `b${i}`], output: [`be${i}`] });
    if (s.noise) {
      inputs.push(latent(`n${i}`));
      nodes.push({ opType: "Add", input: [`ax${i}`, `be${i}`], output: [`det${i}`] }, { opType: "Add", input: [`det${i}`, `n${i}`], output: [`y${i}`] });
    } else nodes.push({ opType: "Add", input: [`ax${i}`, `be${i}`], output: [`y${i}`] });
    outputs.push(latent(`y${i}`));
    if (s.x0) {
      inputs.push({ name: `pa${i}`, elem: "float32", dims: [1] }, { name: `pb${i}`, elem: "float32", dims: [1] });
      nodes.push({ opType: "Mul", input: [`x${i}`, `pa${i}`], output: [`pax${i}`] }, { opType: "Mul", input: [eps, `pb${i}`], output: [`pbe${i}`] }, { opType: "Add", input: [`pax${i}`, `pbe${i}`], output: [`p${i}`] });
      outputs.push(latent(`p${i}`));
    }
  });
  return { name: "step", inputs, outputs, nodes };
}
