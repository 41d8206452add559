// Shared test helpers: temp dirs, child processes with timeouts, assertions on error shape.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';

/** A fresh temp dir, removed when the test ends. */
export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'mmapkit-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Run `node --input-type=module -e code` as a real child process, with a timeout. */
export function runNode(code, { args = [], nodeArgs = [], timeout = 30_000, env } = {}) {
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', code, ...args], {
    encoding: 'utf8',
    timeout,
    env: env ?? process.env,
  });
  if (r.error) throw r.error;
  return r;
}

/** The dist entry point, as an absolute URL for child programs. */
export const distUrl = new URL('../dist/index.js', import.meta.url).href;

/** Assert that fn throws an error with exactly these code and name (and optional more props). */
export function throwsCode(fn, code, name, more = {}) {
  assert.throws(fn, (err) => {
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    if (name !== undefined) assert.equal(err.name, name, `expected ${name} for ${code}: ${err.message}`);
    for (const [k, v] of Object.entries(more)) assert.deepEqual(err[k], v, `property ${k}`);
    return true;
  });
}

/** Lines of /proc/self/maps that name this path. */
export function mapsOf(path, mapsText) {
  return mapsText.split('\n').filter((l) => l.endsWith(` ${path}`) || l.endsWith(` ${path} (deleted)`));
}

/** xorshift32: the same seeded sequence in a parent and its children (int32 values). */
export function* xorshift(seed) {
  let x = seed >>> 0 || 1;
  for (;;) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    yield x | 0;
  }
}
