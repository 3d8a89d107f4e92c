/**
 * Where the ONNX components run. Kept in core (not pipelines/device.ts, which checks that a device is
 * usable) because the config validates the name, and core sits below pipelines.
 */
export const DEVICES = ["cpu", "cuda", "webgpu"] as const;
/**
 * A device name: `cpu`, `cuda` (onnxruntime-node's CUDA provider, installed separately) or `webgpu` (the WebGPU
 * provider bundled with onnxruntime-node: Vulkan on Linux, Metal on macOS, D3D12 on Windows; experimental).
 */
export type Device = (typeof DEVICES)[number];
