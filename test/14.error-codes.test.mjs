// Every error code is documented, and every documented code exists (issue 13; Node's own check of
// doc/api/errors.md does the same): each `ERR_MMAP_*` code the sources can throw has a row in
// docs/errors.md, each row names a code the sources throw, and the registry of codes in
// src/internal/errors.ts (each with its message template) lists exactly those.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Every .ts file under src/, recursively. */
function sources(dir = join(ROOT, 'src')) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

const ERRORS_TS = join(ROOT, 'src', 'internal', 'errors.ts');
// The registry of codes (REGISTRY in errors.ts, one `  ERR_MMAP_X:` line per code with its template).
const unionText = /const REGISTRY = \{([^]*?)\n\} as const;/.exec(readFileSync(ERRORS_TS, 'utf8'))?.[1] ?? '';
const union = new Set([...unionText.matchAll(/^ {2}(ERR_MMAP_[A-Z_]+):/gm)].map((m) => m[1]));
const used = new Set();
for (const file of sources()) {
  let text = readFileSync(file, 'utf8');
  if (file === ERRORS_TS) text = text.replace(unionText, '');
  for (const m of text.matchAll(/'(ERR_MMAP_[A-Z_]+)'/g)) used.add(m[1]);
}
const documented = new Set([...readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8').matchAll(/^\| `(ERR_MMAP_[A-Z_]+)` \|/gm)].map((m) => m[1]));

test('every ERR_MMAP code the sources use has a row in docs/errors.md', () => {
  assert.ok(used.size >= 25, `found only ${used.size} codes in src/: the scan is broken`);
  assert.deepEqual([...used].filter((c) => !documented.has(c)).sort(), []);
});

test('every code docs/errors.md documents is used by the sources', () => {
  assert.deepEqual([...documented].filter((c) => !used.has(c)).sort(), []);
});

test('the registry of codes (and so the MmapkitErrorCode type) lists exactly the codes in use', () => {
  assert.deepEqual([...union].sort(), [...used].sort());
});
