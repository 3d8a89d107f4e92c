/**
 * Where the ONNX components run. Kept in core (not pipelines/device.ts, which checks that a device is
 * usable) because the config validates the name, and core sits below pipelines.
 */
export const DEVICES = ["cpu", "cuda"] as const;
/** A device name: `cpu` or `cuda`. */
export type Device = (typeof DEVICES)[number];
