/**
 * Benchmark 3: where the time of the library's hot paths goes. Not a comparison with fs: the cost of
 * the pieces that `mapping.buffer`, `mapping.view()`, `map()` and `unmap()` are made of, measured one
 * by one, so that the gap between the library and the C floor (benchmarks 1 and 2) can be attributed.
 *
 * Uses the internal binding (dist/binding.js) to time the native calls without the TypeScript layer.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../dist/binding.js';
import { constants, map, mapAnonymous } from '../dist/index.js';
import { collectGarbage, ensureDataFile, fmt, interleaved, markdownTable, round, tick } from './lib.mjs';

export const id = 'overhead';

/**
 * Costs that may grow with the number of live mappings: the guard registry (native/guard.c) keeps one
 * slot per mapping and every lookup (`native.faulted`, munmap's unregister) scans it from the start,
 * and mmap's register takes the first free slot. `others` mappings are made first, then the measured
 * ones, which therefore sit behind them.
 */
async function withLiveMappings(others, cfg, fd) {
  const { PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS } = constants;
  // Release the registry slots of mappings unmapped earlier (they are held until the GC drops their
  // Mapping), so that the `others` fill the lowest slots and the measured ones come after them.
  await collectGarbage();
  const extra = [];
  for (let i = 0; i < others; i++) extra.push(mapAnonymous(4096));
  const m = mapAnonymous(4096);
  const addr = native.mmap(4096n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n, 4096);
  let sink = 0;
  const ns = await interleaved(
    {
      bufferGetter: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += m.buffer.length;
        sink += s;
      },
      nativeFaulted: {
        iterations: cfg.scanIterations,
        fn: (n) => {
          let s = 0;
          for (let i = 0; i < n; i++) s += native.faulted(addr) ? 1 : 0;
          sink += s;
        },
      },
      mapFdUnmap: {
        iterations: cfg.mapIterations,
        fn: (n) => {
          for (let i = 0; i < n; i++) map(fd).unmap();
        },
      },
    },
    { iterations: cfg.callIterations, runs: cfg.runs, unit: 'ns', gc: true },
  );
  native.munmap(addr, 4096);
  m.unmap();
  for (const e of extra) e.unmap();
  await collectGarbage();
  return { ...ns, sink };
}

/**
 * @param {{ quick: boolean, dataDir: string, log: (s: string) => void }} ctx
 */
export async function run(ctx) {
  const cfg = ctx.quick
    ? { callIterations: 200_000, viewIterations: 2_000, scanIterations: 2_000, mapIterations: 500, runs: 3, manyMappings: [1_000], batches: [100, 1_000], batchRuns: 3 }
    : { callIterations: 1_000_000, viewIterations: 10_000, scanIterations: 10_000, mapIterations: 2_000, runs: 7, manyMappings: [1_000, 10_000], batches: [100, 1_000, 10_000], batchRuns: 5 };
  const small = join(ctx.dataDir, 'small-4k.bin');
  ensureDataFile(small, 4096);
  const { PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS } = constants;
  const PROT_RW = PROT_READ | PROT_WRITE;
  let sink = 0;

  // ---- Per-access costs (ns per call), interleaved ----
  const m = mapAnonymous(1 << 20);
  const buf = m.buffer;
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  // A region that the guard registry scan finds at once (the lowest free slot).
  const addr = native.mmap(1n << 20n, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n, 1 << 20);
  if (typeof addr === 'number') throw new Error(`mmap: ${addr}`);
  const ns = await interleaved(
    {
      napiFloor: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += native.guardInstalled() ? 1 : 0;
        sink += s;
      },
      typedLoad: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += u32[i & 0xffff];
        sink += s;
      },
      readUInt32LE: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += buf.readUInt32LE((i & 0xffff) << 2);
        sink += s;
      },
      readBigUInt64LE: (n) => {
        let s = 0n;
        for (let i = 0; i < n; i++) s = BigInt.asUintN(64, s + buf.readBigUInt64LE((i & 0xffff) << 3));
        sink += Number(s & 1n);
      },
      nativeFaulted: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += native.faulted(addr) ? 1 : 0;
        sink += s;
      },
      faultedGetter: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += m.faulted ? 1 : 0;
        sink += s;
      },
      bufferGetter: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += m.buffer.length;
        sink += s;
      },
      nativeView: {
        iterations: cfg.viewIterations,
        fn: (n) => {
          let s = 0;
          for (let i = 0; i < n; i++) s += native.view(addr + BigInt((i & 0xff) << 12), 8).byteLength;
          sink += s;
        },
      },
      view: {
        iterations: cfg.viewIterations,
        fn: (n) => {
          let s = 0;
          for (let i = 0; i < n; i++) s += m.view((i & 0xff) << 12, 8).length;
          sink += s;
        },
      },
    },
    { iterations: cfg.callIterations, runs: cfg.runs, unit: 'ns' },
  );
  native.munmap(addr, 1 << 20);
  m.unmap();

  // ---- The same with many live mappings (0 = none besides the measured ones) ----
  const many = {};
  {
    const fd = openSync(small, 'r');
    for (const k of [0, ...cfg.manyMappings]) {
      const { sink: s, ...r } = await withLiveMappings(k, cfg, fd);
      many[k] = r;
      sink += s;
      await tick();
    }
    closeSync(fd);
  }

  // ---- map() + unmap() taken apart (µs per pair), interleaved ----
  const fd = openSync(small, 'r');
  const us = await interleaved(
    {
      openClose: (n) => {
        for (let i = 0; i < n; i++) closeSync(openSync(small, 'r'));
      },
      fstatNumber: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += fstatSync(fd).size & 1;
        sink += s;
      },
      fstatBigint: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) s += Number(fstatSync(fd, { bigint: true }).size & 1n);
        sink += s;
      },
      nativeMmapMunmap: (n) => {
        for (let i = 0; i < n; i++) {
          const a = native.mmap(4096n, PROT_RW, MAP_PRIVATE, fd, 0n, 4096);
          if (typeof a === 'number') throw new Error(`mmap: ${a}`);
          native.munmap(a, 4096);
        }
      },
      mapFd: (n) => {
        for (let i = 0; i < n; i++) map(fd).unmap();
      },
      mapPath: (n) => {
        for (let i = 0; i < n; i++) map(small).unmap();
      },
      mapPathBuffer: (n) => {
        let s = 0;
        for (let i = 0; i < n; i++) {
          const x = map(small);
          s += x.buffer.length; // the Buffer is made; its memory is not touched (no page fault)
          x.unmap();
        }
        sink += s;
      },
    },
    { iterations: cfg.mapIterations, runs: cfg.runs, unit: 'us', gc: true },
  );

  // ---- map(fd) + unmap() in synchronous batches of growing size (after a full GC each) ----
  const batches = await interleaved(
    Object.fromEntries(
      cfg.batches.map((b) => [
        b,
        {
          iterations: b,
          fn: (n) => {
            for (let i = 0; i < n; i++) map(fd).unmap();
          },
        },
      ]),
    ),
    { iterations: 1, runs: cfg.batchRuns, unit: 'us', gc: true },
  );
  closeSync(fd);

  const med = (s) => s.median;
  return {
    id,
    config: cfg,
    ns,
    many,
    us,
    batches,
    derived: {
      viewOverNativeViewNs: round(med(ns.view) - med(ns.nativeView), 1),
      firstBufferUs: round(med(us.mapPathBuffer) - med(us.mapPath), 3),
      tsLayerUsPerPairFd: round(med(us.mapFd) - med(us.fstatBigint) - med(us.nativeMmapMunmap), 3),
      tsLayerUsPerPairPath: round(
        med(us.mapPath) - med(us.openClose) - med(us.fstatBigint) - med(us.nativeMmapMunmap),
        3,
      ),
    },
    sink, // used, so the loops above cannot be optimized away
  };
}

export function render(res) {
  const { ns, us, many, derived } = res;
  const row = (label, s, unit, note = '') => [label, fmt(s.median), `${fmt(s.min)}–${fmt(s.max)}`, unit, note];
  const rows = [
    row('N-API call that does nothing (`native.guardInstalled()`): floor of any native call', ns.napiFloor, 'ns/call'),
    row('`Uint32Array` element load from a mapping (in cache)', ns.typedLoad, 'ns/call'),
    row('`buf.readUInt32LE(pos)` from a mapping (in cache)', ns.readUInt32LE, 'ns/call'),
    row('`buf.readBigUInt64LE(pos)` from a mapping (in cache)', ns.readBigUInt64LE, 'ns/call'),
    row('`native.faulted(addr)`: N-API call + guard registry scan, 1 live mapping', ns.nativeFaulted, 'ns/call'),
    row('`mapping.faulted` getter, 1 live mapping', ns.faultedGetter, 'ns/call'),
    row('`mapping.buffer` getter (Buffer already made), 1 live mapping', ns.bufferGetter, 'ns/call',
      `${fmtX(ns.bufferGetter.median / ns.typedLoad.median)} a \`Uint32Array\` load`),
  ];
  const base = many[0];
  for (const [k, v] of Object.entries(many)) {
    const others = k === '0' ? 'no other live mapping' : `${Number(k).toLocaleString('en-US')} other live mappings made before`;
    const vs = (x, y) => (k === '0' ? '' : `${fmtX(x / y)} the cost without them`);
    rows.push(row(`\`mapping.buffer\` getter, ${others}`, v.bufferGetter, 'ns/call', vs(v.bufferGetter.median, base.bufferGetter.median)));
    rows.push(row(`\`native.faulted(addr)\`, ${others}`, v.nativeFaulted, 'ns/call', vs(v.nativeFaulted.median, base.nativeFaulted.median)));
    const us = { median: v.mapFdUnmap.median / 1e3, min: v.mapFdUnmap.min / 1e3, max: v.mapFdUnmap.max / 1e3 };
    rows.push(row(`\`map(fd)\` + \`unmap()\`, 4 KiB, ${others}`, us, 'µs/pair', vs(v.mapFdUnmap.median, base.mapFdUnmap.median)));
  }
  rows.push(row('`native.view(addr, 8)` alone (napi_create_external_arraybuffer)', ns.nativeView, 'ns/call'));
  rows.push(row('`mapping.view(offset, 8)`', ns.view, 'ns/call', `${fmt(derived.viewOverNativeViewNs)} ns above \`native.view\``));
  rows.push(row('`fs.openSync` + `fs.closeSync`', us.openClose, 'µs/pair'));
  rows.push(row('`fs.fstatSync(fd)`', us.fstatNumber, 'µs/call'));
  rows.push(row('`fs.fstatSync(fd, { bigint: true })` (what `map()` calls)', us.fstatBigint, 'µs/call'));
  rows.push(row('`native.mmap` + `native.munmap`, 4 KiB file, through the binding', us.nativeMmapMunmap, 'µs/pair'));
  rows.push(row('`map(fd)` + `unmap()`, 4 KiB', us.mapFd, 'µs/pair', `TypeScript layer ≈ ${fmt(derived.tsLayerUsPerPairFd)} µs`));
  rows.push(row('`map(path)` + `unmap()`, 4 KiB', us.mapPath, 'µs/pair', `TypeScript layer ≈ ${fmt(derived.tsLayerUsPerPairPath)} µs`));
  rows.push(row('`map(path)` + first `.buffer` + `unmap()`, 4 KiB', us.mapPathBuffer, 'µs/pair', `first \`.buffer\` ≈ ${fmt(derived.firstBufferUs)} µs`));
  const firstBatch = Object.values(res.batches)[0];
  for (const [b, v] of Object.entries(res.batches)) {
    rows.push(row(`\`map(fd)\` + \`unmap()\`, 4 KiB, ${Number(b).toLocaleString('en-US')} pairs in one synchronous batch`, v, 'µs/pair',
      v === firstBatch ? '' : `${fmtX(v.median / firstBatch.median)} the smallest batch`));
  }
  const table = markdownTable(['Piece', 'median', 'min–max', 'unit', 'note'], rows, ['l', 'r', 'r', 'l', 'l']);
  const notes = [
    '"TypeScript layer" = `map(fd)`+`unmap()` − fstat(bigint) − the native mmap+munmap pair (and, for a path, also − open+close): ' +
      'everything else `map()` and `unmap()` do (validation, BigInt arithmetic, the `Mapping` object and its FinalizationRegistry entry, the checks in `unmap()`, ' +
      'and, where `unmap()` leaves a PROT_NONE placeholder and the munmap to the garbage collector, the placeholder\'s mmap; the deferred munmap itself runs in the collection before the next batch, untimed). ' +
      'First `.buffer` = (map + `.buffer` + unmap) − (map + unmap): the external ArrayBuffer, its bookkeeping (WeakRef, WeakMap, hidden owner property), the Buffer over it, and detaching it in `unmap()`.',
    'In-cache rows read a 256 KiB window over and over: what JavaScript costs per access once the memory system is out of the way. ' +
      'This benchmark runs in the main benchmark process, where mappings with views have been unmapped: typed-array access runs at the "after an ArrayBuffer was detached" speed of benchmark 1.',
    'Every timed batch of the map/unmap rows starts after a full garbage collection. The batch rows show what a pair costs when many are made in a row without the garbage collector running in between.',
  ];
  return { title: 'Where the time goes (hot-path pieces)', table, notes };
}

function fmtX(v) {
  return `${v >= 10 ? v.toFixed(0) : v.toFixed(1)}×`;
}
