/**
 * Hostile PNGs built with zlib, for the decompression-bomb tests and benches: a zlib stream that inflates to
 * any number of zero bytes while costing about 1/1000 of that (one fully flushed deflate block of 1 MiB of
 * zeros, repeated), wrapped in a PNG whose header says whatever the test wants.
 */
import { constants, crc32, deflateRawSync } from "node:zlib";

/** A PNG's IHDR fields. */
export interface BombHeader {
  width: number;
  height: number;
  /** Default 8. */
  bitDepth?: number;
  /** Default 6 (RGBA). */
  colourType?: number;
  interlaced?: boolean;
}

const MiB = 1024 * 1024;
/** 1 MiB of zeros deflated and fully flushed: self-contained, so copies of it concatenate into one valid stream. */
const ZERO_BLOCK = deflateRawSync(Buffer.alloc(MiB), { level: 9, finishFlush: constants.Z_FULL_FLUSH });

/** A zlib stream (header, blocks, Adler-32) that inflates to `bytes` zero bytes. */
export function zeroStream(bytes: number): Buffer {
  const parts: Buffer[] = [Buffer.from([0x78, 0xda])];
  for (let left = bytes; left > 0; left -= MiB) parts.push(left >= MiB ? ZERO_BLOCK : deflateRawSync(Buffer.alloc(left), { finishFlush: constants.Z_FULL_FLUSH }));
  parts.push(deflateRawSync(Buffer.alloc(0))); // the final, empty block
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE((((bytes % 65_521) << 16) | 1) >>> 0); // Adler-32 of zeros: A = 1, B = length
  parts.push(adler);
  return Buffer.concat(parts);
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

/** A PNG with this header and `zlibData` as its pixel data (split into IDAT chunks of at most 1 MiB). */
export function pngWith(h: BombHeader, zlibData: Buffer): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(h.width, 0);
  ihdr.writeUInt32BE(h.height, 4);
  ihdr[8] = h.bitDepth ?? 8;
  ihdr[9] = h.colourType ?? 6;
  ihdr[12] = h.interlaced ? 1 : 0;
  const idat: Buffer[] = [];
  for (let at = 0; at < zlibData.length; at += MiB) idat.push(chunk("IDAT", zlibData.subarray(at, at + MiB)));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), ...idat, chunk("IEND", Buffer.alloc(0))]);
}

/**
 * A decompression bomb of about `fileBytes`: a small image (`h`, 32x32 interlaced RGBA by default) whose pixel
 * data inflates to about 1,000 times the file size, far past what the header implies.
 */
export function bombPng(fileBytes: number, h: BombHeader = { width: 32, height: 32, interlaced: true }): Buffer {
  return pngWith(h, zeroStream(Math.round(fileBytes / ZERO_BLOCK.length) * MiB));
}
