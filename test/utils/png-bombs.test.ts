/**
 * Bounded PNG decoding (issue 21 item 1) at the decoder: a stream that inflates past what its header implies
 * is refused (interlaced or not), a header over the pixel cap is refused before anything is inflated, 16-bit
 * samples are refused by name, and every valid image (Adam7 included, at sizes whose passes are partly empty)
 * still decodes. The bombs inflate to hundreds of MB if nothing stops them; the tests assert the typed error.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PNG } from "pngjs";
import { DiffusionOutput } from "../../src/core/output.js";
import { OmniDiffusionRequest } from "../../src/core/request.js";
import { LimitExceededError, ValidationError } from "../../src/errors/omni-error.js";
import { decodePngAsync, INLINE_MAX_PIXELS, resizeRgbAsync } from "../../src/utils/png-decode-pool.js";
import { resizeRgb } from "../../src/utils/image-resize.js";
import { decodeUpload } from "../../src/server/shared/edit-images.js";
import { DEFAULT_MAX_PNG_PIXELS, inflatedSize, readPngHeader } from "../../src/utils/png-header.js";
import { decodeMaskPng, decodePng, decodePngRgba, encodePng } from "../../src/utils/png.js";
import { bombPng, pngWith, zeroStream } from "../helpers/png-bombs.js";

const MiB = 1024 * 1024;

/** A ValidationError (not a LimitExceededError) naming `field`, whose message matches `re`. */
const invalid = (field: string, re: RegExp) => (e: unknown) =>
  e instanceof ValidationError && !(e instanceof LimitExceededError) && e.field === field && re.test(e.message) ? true : assert.fail(`unexpected: ${String(e)}`);

describe("bounded PNG decoding", () => {
  it("an interlaced bomb (32x32 header, 256 MiB of pixel data) is refused as a bomb, naming the field", () => {
    const bomb = bombPng(256 * 1024); // ~256 KiB file
    assert.ok(bomb.length < 300 * 1024);
    assert.throws(() => decodePng(bomb, { field: "image" }), invalid("image", /inflates past the \d+ bytes a 32x32 interlaced PNG holds \(a decompression bomb\)/));
    assert.throws(() => decodeMaskPng(bomb), invalid("mask_image", /decompression bomb/));
  });

  it("a non-interlaced bomb is refused too, not silently cut to its header's size", () => {
    const bomb = bombPng(64 * 1024, { width: 32, height: 32, interlaced: false });
    assert.throws(() => decodePng(bomb), invalid("image", /inflates past the 4128 bytes a 32x32 PNG holds/));
  });

  it("a header over the pixel cap is a LimitExceededError naming the cap, before anything is inflated", () => {
    // 50,000² RGBA would be 10 GB: the header alone must refuse it (the data here would not even fill it).
    const huge = pngWith({ width: 50_000, height: 50_000, interlaced: true }, zeroStream(MiB));
    assert.throws(
      () => decodePng(huge),
      (e: unknown) => e instanceof LimitExceededError && e.field === "image" && e.data.limit === DEFAULT_MAX_PNG_PIXELS && /50000x50000 is 2500000000 pixels, more than the 16777216/.test(e.message),
    );
    const small = encodePng({ width: 65, height: 64, data: new Uint8Array(65 * 64 * 3) });
    assert.throws(() => decodePng(small, { maxPixels: 64 * 64, field: "init_images", capNote: "pixels an upload may have here (64x64)" }), (e: unknown) =>
      e instanceof LimitExceededError && e.field === "init_images" && /65x64 is 4160 pixels, more than the 4096 pixels an upload may have here \(64x64\)/.test(e.message),
    );
  });

  it("16-bit samples and depths a colour type does not have are refused by name", () => {
    const png16 = new PNG({ width: 4, height: 4, bitDepth: 16, colorType: 6, inputColorType: 6 });
    const bytes16 = PNG.sync.write(png16, { bitDepth: 16, colorType: 6, inputColorType: 6 });
    assert.equal(readPngHeader(bytes16).bitDepth, 16);
    assert.throws(() => decodePng(bytes16), invalid("image", /16-bit RGBA PNGs are not supported \(8 bits are\); save it with 8 bits per channel/));
    assert.throws(() => decodePng(pngWith({ width: 4, height: 4, colourType: 3, bitDepth: 16 }, zeroStream(4 * 9))), invalid("image", /16-bit palette PNGs are not supported \(1, 2, 4, 8 bits are\)/));
    assert.throws(() => decodePng(pngWith({ width: 4, height: 4, colourType: 5 }, zeroStream(4 * 9))), invalid("image", /colour type 5 does not exist/));
    assert.throws(() => decodePng(pngWith({ width: 0, height: 4 }, zeroStream(0))), invalid("image", /0x4 pixels has no image/));
  });

  it("valid interlaced images decode, including sizes where some Adam7 passes are empty", () => {
    for (const [w, h] of [[1, 1], [2, 3], [5, 1], [8, 8], [9, 17], [33, 32]] as const) {
      for (const [colourType, bitDepth] of [[6, 8], [2, 8], [0, 1], [0, 4], [4, 8]] as const) {
        const header = { width: w, height: h, colourType, bitDepth, interlaced: true };
        const exact = pngWith(header, zeroStream(inflatedSize(header)));
        const img = decodePngRgba(exact);
        assert.deepEqual([img.width, img.height, img.rgba.length], [w, h, w * h * 4], `${w}x${h} type ${colourType}/${bitDepth}`);
        // One byte more than the passes hold is already refused: the bound is exact, not generous.
        assert.throws(() => decodePng(pngWith(header, zeroStream(inflatedSize(header) + 1))), /decompression bomb/, `${w}x${h} type ${colourType}/${bitDepth} + 1 byte`);
      }
    }
  });

  it("images pngjs writes (every colour type it writes, 8 bits) decode as before", () => {
    for (const colorType of [0, 2, 4, 6] as const) {
      const png = new PNG({ width: 7, height: 5, colorType, inputColorType: 6 });
      for (let i = 0; i < png.data.length; i++) png.data[i] = (i * 37) & 255;
      const bytes = PNG.sync.write(png, { colorType, inputColorType: 6 });
      assert.deepEqual(decodePngRgba(bytes).rgba, new Uint8Array(PNG.sync.read(bytes).data), `colour type ${colorType}`);
    }
  });

  it("a request dict with a bomb as image or mask_image is a ValidationError naming that field; the cap applies", () => {
    const b64 = bombPng(128 * 1024).toString("base64");
    const ok = encodePng({ width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) }).toString("base64");
    assert.throws(() => OmniDiffusionRequest.fromDict({ prompt: "a red circle", image: b64 }), invalid("image", /decompression bomb/));
    assert.throws(() => OmniDiffusionRequest.fromDict({ prompt: "a red circle", image: ok, mask_image: b64 }), invalid("mask_image", /decompression bomb/));
    assert.throws(() => OmniDiffusionRequest.fromDict({ prompt: "a red circle", image: ok }, { images: { maxPixels: 1_000 } }), (e: unknown) => e instanceof LimitExceededError && e.field === "image");
  });

  it("an image from a peer that declares 32x32 but carries a bomb is refused when its pixels are read", () => {
    const out = DiffusionOutput.fromDict({ output: [{ request_id: "r", index: 0, seed: 1, width: 32, height: 32, png_base64: bombPng(128 * 1024).toString("base64") }] });
    const img = out.output[0]!;
    assert.throws(() => img.data, invalid("output.0", /decompression bomb/));
  });
});

describe("decoding off the event loop (the decode pool)", () => {
  const big = (() => {
    const png = new PNG({ width: 700, height: 700 });
    for (let i = 0; i < png.data.length; i++) png.data[i] = i % 4 === 3 ? 255 : (i * 31) & 255;
    return PNG.sync.write(png);
  })();

  it("a big image decodes on a pool thread: the event loop turns while it decodes, and the pixels are the same", async () => {
    assert.ok(700 * 700 > INLINE_MAX_PIXELS);
    let turned = false;
    setImmediate(() => (turned = true));
    const img = await decodePngAsync(big, { field: "image" });
    assert.ok(turned, "a setImmediate queued before the decode ran before it finished: the decode did not hold the event loop");
    assert.deepEqual(img.rgb, decodePng(big).data);
    assert.deepEqual([img.transparent, img.rgba], [false, null], "an opaque image brings no RGBA back");
    const seeThrough = new PNG({ width: 300, height: 300 });
    seeThrough.data.fill(7);
    const bytes = PNG.sync.write(seeThrough);
    const clear = await decodePngAsync(bytes);
    assert.equal(clear.transparent, true);
    assert.deepEqual(clear.rgba, decodePngRgba(bytes).rgba);
  });

  it("a big resize runs on a pool thread too (2048² to 1024² held serve's event loop ~1 s): same pixels as inline", async () => {
    const src = { width: 900, height: 700, data: Uint8Array.from({ length: 900 * 700 * 3 }, (_, i) => (i * 31) % 251) };
    assert.ok(600 * 500 > INLINE_MAX_PIXELS);
    let turned = false;
    setImmediate(() => (turned = true));
    const out = await resizeRgbAsync(src, 600, 500);
    assert.ok(turned, "the event loop turned while the resize ran");
    assert.deepEqual(out, resizeRgb(src, 600, 500));
    assert.equal(src.data.length, 900 * 700 * 3, "the caller's pixels are copied to the thread, not taken");
    assert.equal(await resizeRgbAsync(src, 900, 700), src, "same size: no work");
  });

  it("transfer: a big upload's buffer moves to the pool thread (detached here, not copied); without it, or as a view into a bigger buffer, it stays", async () => {
    const pixels = decodePng(big).data;
    const given = new Uint8Array(big);
    assert.deepEqual((await decodePngAsync(given, { transfer: true })).rgb, pixels);
    assert.equal(given.byteLength, 0, "the caller's buffer was moved to the thread");
    const kept = new Uint8Array(big);
    assert.deepEqual((await decodePngAsync(kept)).rgb, pixels);
    assert.equal(kept.byteLength, big.length, "without transfer the bytes are copied");
    const inside = new Uint8Array(big.length + 8);
    inside.set(big, 8);
    const view = inside.subarray(8);
    assert.deepEqual((await decodePngAsync(view, { transfer: true })).rgb, pixels);
    assert.equal(inside.byteLength, big.length + 8, "a view into a bigger buffer is copied: the rest of it is not the decoder's to take");
    // Uploads are the request's to give: decodeUpload moves them.
    const upload = new Uint8Array(big);
    await decodeUpload(upload, "image", { maxPixels: DEFAULT_MAX_PNG_PIXELS, capNote: "pixels an upload may have" });
    assert.equal(upload.byteLength, 0);
  });

  it("fit: the RGB is resized where it is decoded and only that size comes back (the same pixels as resizing after)", async () => {
    const full = { width: 700, height: 700, data: decodePng(big).data };
    const onThread = await decodePngAsync(big, { fit: { width: 32, height: 24 } });
    assert.deepEqual([onThread.width, onThread.height, onThread.rgbSize], [700, 700, { width: 32, height: 24 }]);
    assert.deepEqual(onThread.rgb, resizeRgb(full, 32, 24).data);
    const up = await decodePngAsync(big, { fit: { width: 800, height: 600 } });
    assert.deepEqual(up.rgb, resizeRgb(full, 800, 600).data);
    const small = encodePng({ width: 40, height: 30, data: Uint8Array.from({ length: 40 * 30 * 3 }, (_, i) => (i * 7) & 255) });
    const inline = await decodePngAsync(small, { fit: { width: 600, height: 500 } });
    assert.deepEqual(inline.rgb, resizeRgb(decodePng(small), 600, 500).data, "a small image asked at a big size: same pixels");
    assert.equal((await decodePngAsync(big, { fit: { width: 700, height: 700 } })).rgbSize, undefined, "its own size: nothing to do");
    const upload = await decodeUpload(new Uint8Array(big), "image", { maxPixels: DEFAULT_MAX_PNG_PIXELS, capNote: "pixels an upload may have" }, undefined, { width: 32, height: 24 });
    assert.deepEqual([upload.width, upload.height, upload.rgb.width, upload.rgb.height, upload.rgb.data.length], [700, 700, 32, 24, 32 * 24 * 3]);
  });

  it("errors from a pool thread keep their class and field; the cap is checked before a thread is asked", async () => {
    const bomb = bombPng(512 * 1024, { width: 600, height: 600, interlaced: true });
    await assert.rejects(decodePngAsync(bomb, { field: "init_images" }), invalid("init_images", /600x600 interlaced PNG holds \(a decompression bomb\)/));
    await assert.rejects(decodePngAsync(big, { field: "image", maxPixels: 4096, capNote: "pixels an upload may have here" }), (e: unknown) => e instanceof LimitExceededError && e.data.limit === 4096);
    await assert.rejects(decodePngAsync(Buffer.from("GIF89a...."), { field: "mask" }), invalid("mask", /not a PNG image/));
  });
});
