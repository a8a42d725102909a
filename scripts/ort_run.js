#!/usr/bin/env node
// Runs an ONNX model exported by `kdtrain export` under ONNX Runtime's CPU
// execution provider (npm package onnxruntime-node, installed into .ort/ by
// scripts/onnxruntime.sh). kdtrain calls it for the ONNX Runtime latency
// columns; the onnx_export test calls it to compare logits with kdtrain's.
//
//   ort_run.js version
//       prints the ONNX Runtime version
//   ort_run.js infer MODEL.onnx IMAGES OUT.f32 [--limit N] [--batch B] [--threads T]
//       IMAGES: an IDX image file (magic 2051, u8, plain or gzip), e.g.
//       data/mnist/t10k-images-idx3-ubyte, or a .npy file of u8 images
//       (N, C, H, W) as kdtrain writes them (its image-folder cache, tests);
//       its first N images (all by default) go in as float32 pixel values
//       0..255, shape (b, C, H, W), in batches
//       of B (default 1000); OUT.f32 gets the logits (N, classes), float32
//       little-endian, row-major
//   ort_run.js latency MODEL.onnx --shape CxHxW --batches 1,1024 --json OUT.json
//                      [--threads T] [--repeats R] [--budget-ms MS]
//       times session.run (forward only, input already in memory) at each
//       batch size: 2 warm-up runs, then up to R timed runs (default 50), at
//       least 5, stopping early once MS milliseconds (default 1500) are spent.
//       Writes {"onnxruntime": version, "threads": T, "latency": [{"batch": b,
//       "ms": [per-run milliseconds]}]}; the caller computes median and p90.
//
// --threads T sets ONNX Runtime's intra-op threads; 0 (default) is its own
// default, one per physical core. Exit status: 0 done, 2 bad usage or input,
// 3 onnxruntime-node not installed, 1 ONNX Runtime failed. Errors are one
// line on stderr starting "ort_run.js: ".
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

class UsageError extends Error {}

function die(status, message) {
  process.stderr.write(`ort_run.js: ${message}\n`);
  process.exit(status);
}

// onnxruntime-node from $KD_ORT_DIR or <repo>/.ort (scripts/onnxruntime.sh), else node's own search.
function loadOrt() {
  const roots = [process.env.KD_ORT_DIR, path.join(__dirname, '..', '.ort')].filter(Boolean);
  let resolved;
  try {
    resolved = require.resolve('onnxruntime-node', {paths: roots});
  } catch (e) {
    try {
      resolved = require.resolve('onnxruntime-node');
    } catch (e2) {
      die(3, `onnxruntime-node is not installed (looked in ${roots.join(', ')}); run scripts/onnxruntime.sh`);
    }
  }
  try {
    return require(resolved);
  } catch (e) {
    die(3, `onnxruntime-node at ${resolved} does not load: ${String(e.message).split('\n')[0]}`);
  }
}

// --name value pairs after the positional arguments.
function parseFlags(args, allowed) {
  const flags = {};
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i];
    if (!allowed.includes(name)) throw new UsageError(`unknown or misplaced argument '${name}'`);
    if (i + 1 >= args.length) throw new UsageError(`${name} needs a value`);
    flags[name] = args[i + 1];
  }
  return flags;
}

function positiveInt(flag, text, min) {
  if (!/^[0-9]+$/.test(text) || Number(text) < min) throw new UsageError(`${flag} must be an integer >= ${min}, got '${text}'`);
  return Number(text);
}

// (n, c, h, w, pixels) from a .npy file of '|u1' images (N, C, H, W) in C order.
function readNpyImages(file, bytes) {
  const magic = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);
  if (bytes.length < 10 || !bytes.subarray(0, 6).equals(magic)) throw new UsageError(`${file}: not a .npy file`);
  const lengthBytes = bytes[6] === 1 ? 2 : 4;
  const start = 8 + lengthBytes;
  const headerLength = lengthBytes === 2 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const header = bytes.subarray(start, start + headerLength).toString('latin1');
  const shape = /'shape':\s*\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,?\s*\)/.exec(header);
  if (!/'descr':\s*'\|u1'/.test(header) || /'fortran_order':\s*True/.test(header) || !shape)
    throw new UsageError(`${file}: expected u8 images (N, C, H, W) in C order, header ${header.trim()}`);
  const [n, c, h, w] = shape.slice(1).map(Number);
  const data = bytes.subarray(start + headerLength);
  if (data.length !== n * c * h * w) {
    throw new UsageError(`${file}: ${data.length} data bytes, the header says ${n * c * h * w}`);
  }
  return {n, c, h, w, pixels: data};
}

// (n, c, h, w, pixels: Uint8Array) from an IDX image file (c = 1), validated
// like kdtrain's reader, or from a .npy file (readNpyImages).
function readImages(file) {
  let bytes;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`${file}: cannot read: ${e.code || e.message}`);
  }
  if (file.endsWith('.npy')) return readNpyImages(file, bytes);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = zlib.gunzipSync(bytes);
  if (bytes.length < 16 || bytes.readUInt32BE(0) !== 2051) throw new UsageError(`${file}: not an IDX image file (magic 2051)`);
  const n = bytes.readUInt32BE(4), h = bytes.readUInt32BE(8), w = bytes.readUInt32BE(12);
  if (bytes.length !== 16 + n * h * w) throw new UsageError(`${file}: ${bytes.length} bytes, the header says ${16 + n * h * w}`);
  return {n, c: 1, h, w, pixels: bytes.subarray(16)};
}

async function createSession(ort, model, threads) {
  const options = {executionProviders: ['cpu'], graphOptimizationLevel: 'all', interOpNumThreads: 1};
  if (threads > 0) options.intraOpNumThreads = threads;
  try {
    return await ort.InferenceSession.create(model, options);
  } catch (e) {
    throw new Error(`${model}: ONNX Runtime cannot load it: ${String(e.message).split('\n')[0]}`);
  }
}

async function infer(ort, args) {
  if (args.length < 3) throw new UsageError('infer needs MODEL.onnx IMAGES OUT.f32');
  const [model, images, out] = args;
  const flags = parseFlags(args.slice(3), ['--limit', '--batch', '--threads']);
  const idx = readImages(images);
  const limit = flags['--limit'] ? Math.min(positiveInt('--limit', flags['--limit'], 1), idx.n) : idx.n;
  const batch = flags['--batch'] ? positiveInt('--batch', flags['--batch'], 1) : 1000;
  const session = await createSession(ort, model, flags['--threads'] ? positiveInt('--threads', flags['--threads'], 0) : 0);
  const pixels = idx.c * idx.h * idx.w;
  const chunks = [];
  for (let begin = 0; begin < limit; begin += batch) {
    const b = Math.min(batch, limit - begin);
    const x = Float32Array.from(idx.pixels.subarray(begin * pixels, (begin + b) * pixels));
    const result = await session.run({[session.inputNames[0]]: new ort.Tensor('float32', x, [b, idx.c, idx.h, idx.w])});
    const logits = result[session.outputNames[0]];
    if (logits.dims.length !== 2 || logits.dims[0] !== b) throw new Error(`output has shape [${logits.dims}], expected [${b}, classes]`);
    chunks.push(Buffer.from(logits.data.buffer, logits.data.byteOffset, logits.data.byteLength));
  }
  const tmp = `${out}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, Buffer.concat(chunks));
  fs.renameSync(tmp, out);
}

async function latency(ort, args) {
  if (args.length < 1) throw new UsageError('latency needs MODEL.onnx');
  const model = args[0];
  const flags = parseFlags(args.slice(1), ['--shape', '--batches', '--json', '--threads', '--repeats', '--budget-ms']);
  for (const required of ['--shape', '--batches', '--json'])
    if (!flags[required]) throw new UsageError(`latency needs ${required}`);
  const shape = flags['--shape'].split('x').map((d) => positiveInt('--shape', d, 1));
  if (shape.length !== 3) throw new UsageError(`--shape must be CxHxW, got '${flags['--shape']}'`);
  const batches = flags['--batches'].split(',').map((b) => positiveInt('--batches', b, 1));
  const threads = flags['--threads'] ? positiveInt('--threads', flags['--threads'], 0) : 0;
  const repeats = flags['--repeats'] ? positiveInt('--repeats', flags['--repeats'], 1) : 50;
  const budgetMs = flags['--budget-ms'] ? positiveInt('--budget-ms', flags['--budget-ms'], 0) : 1500;
  const minRepeats = Math.min(5, repeats);

  const session = await createSession(ort, model, threads);
  const report = {onnxruntime: String(ort.env.versions.common), threads, latency: []};
  const perSample = shape[0] * shape[1] * shape[2];
  for (const b of batches) {
    const x = new Float32Array(b * perSample);
    for (let i = 0; i < x.length; ++i) x[i] = (i * 37) % 256;  // pixel-like values; the timing does not depend on them
    const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', x, [b, ...shape])};
    for (let w = 0; w < 2; ++w) await session.run(feeds);
    const ms = [];
    let spent = 0;
    while (ms.length < repeats && (ms.length < minRepeats || spent < budgetMs)) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      const t = Number(process.hrtime.bigint() - t0) / 1e6;
      ms.push(t);
      spent += t;
    }
    report.latency.push({batch: b, ms});
  }
  const tmp = `${flags['--json']}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(report) + '\n');
  fs.renameSync(tmp, flags['--json']);
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  const usage = 'usage: ort_run.js version | infer MODEL IMAGES OUT [...] | latency MODEL --shape CxHxW --batches LIST --json OUT [...]';
  if (!['version', 'infer', 'latency'].includes(mode)) die(2, usage);
  const ort = loadOrt();
  try {
    if (mode === 'version') process.stdout.write(`${ort.env.versions.common}\n`);
    else if (mode === 'infer') await infer(ort, args);
    else await latency(ort, args);
  } catch (e) {
    die(e instanceof UsageError ? 2 : 1, String(e.message).split('\n')[0]);
  }
}

main();
