// The npm package as a user gets it: the prebuilt binaries it carries (up to date with native/, for
// the right machine, needing no newer C library than glibc 2.28), and a packed tarball installed into
// an empty folder on a PATH without cc, make or python3, then used.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourcesDigest, TARGETS } from '../scripts/prebuild.mjs';
import { tempDir } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PREBUILDS = join(ROOT, 'prebuilds');
const TIMEOUT = 120_000;
/** ELF e_machine of each prebuilt folder's architecture. */
const MACHINE = { x64: 0x3e, arm64: 0xb7 };

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: TIMEOUT, killSignal: 'SIGKILL', ...options });
  if (r.error) throw r.error;
  return r;
}

function ok(r, what) {
  assert.equal(r.status, 0, `${what}: exit ${r.status} (signal ${r.signal})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r;
}

test('the prebuilt binaries were built from the native sources as they are now', () => {
  const manifest = JSON.parse(readFileSync(join(PREBUILDS, 'manifest.json'), 'utf8'));
  assert.deepEqual(Object.keys(manifest.binaries).sort(), Object.keys(TARGETS).sort());
  assert.equal(manifest.sources, sourcesDigest().digest, 'native/ changed since the prebuilt binaries were made: run `npm run build:prebuilds` and commit prebuilds/');
});

test('each prebuilt binary is an ELF shared object for its machine; glibc ones need nothing newer than GLIBC_2.28', (t) => {
  const readelf = run('readelf', ['--version']);
  for (const dir of Object.keys(TARGETS)) {
    const file = join(PREBUILDS, dir, 'mmapkit.node');
    const elf = readFileSync(file);
    assert.equal(elf.toString('latin1', 0, 4), '\x7fELF', `${dir}: an ELF file`);
    assert.equal(elf.readUInt16LE(16), 3, `${dir}: ET_DYN (a shared object)`);
    assert.equal(elf.readUInt16LE(18), MACHINE[dir.split('-')[1]], `${dir}: e_machine`);
    if (readelf.status !== 0) {
      t.diagnostic('readelf is missing: C library versions not checked');
      continue;
    }
    const needed = ok(run('readelf', ['--dynamic', '--wide', file]), 'readelf --dynamic').stdout.match(/\(NEEDED\).*\[(.+)\]/g) ?? [];
    const libs = needed.map((l) => l.replace(/.*\[(.+)\]/, '$1'));
    const versions = [...ok(run('readelf', ['--version-info', '--wide', file]), 'readelf --version-info').stdout.matchAll(/Name: GLIBC_([0-9.]+)/g)].map((m) => m[1]);
    if (dir.endsWith('-musl')) {
      assert.deepEqual(libs, ['libc.so'], `${dir}: links musl's libc.so only`);
      assert.deepEqual(versions, [], `${dir}: no glibc symbol versions`);
    } else {
      assert.ok(libs.includes('libc.so.6'), `${dir}: links glibc (${libs})`);
      const newest = versions.sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).pop();
      t.diagnostic(`${dir}: needs ${libs.join(', ')}; newest symbol version GLIBC_${newest}`);
      assert.ok(newest.localeCompare('2.28', 'en', { numeric: true }) <= 0, `${dir} needs GLIBC_${newest} (floor 2.28): ${versions.join(', ')}`);
    }
  }
});

test('npm pack, then npm install into an empty folder with no cc, make or python3 on PATH: map, a channel round trip with a child, npx mmapkit demo', (t) => {
  const dir = tempDir(t);
  const packed = ok(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT }), 'npm pack');
  const [info] = JSON.parse(packed.stdout);
  const files = info.files.map((f) => f.path);
  for (const d of Object.keys(TARGETS)) assert.ok(files.includes(`prebuilds/${d}/mmapkit.node`), `the tarball carries prebuilds/${d}`);
  assert.ok(files.includes('dist/index.js') && files.includes('dist/cli/main.js'), 'the tarball carries dist/');
  assert.ok(!files.some((f) => f.startsWith('build/')), 'no build/ folder in the tarball');
  t.diagnostic(`${info.filename}: ${(info.size / 1024).toFixed(0)} KiB packed, ${info.entryCount} files`);

  // A PATH with node, npm, npx and sh only (as in a slim container image): no compiler, make or python3.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const which = (cmd) => run('sh', ['-c', `command -v ${cmd}`]).stdout.trim();
  for (const cmd of ['node', 'npm', 'npx', 'sh']) symlinkSync(cmd === 'node' ? process.execPath : which(cmd), join(bin, cmd));
  const env = { ...process.env, PATH: bin, npm_config_nodedir: '', MMAPKIT_BINDING: '' };
  delete env.npm_config_nodedir;
  delete env.MMAPKIT_BINDING;
  for (const cmd of ['cc', 'gcc', 'make', 'python3']) {
    assert.notEqual(run('/bin/sh', ['-c', `command -v ${cmd}`], { env }).status, 0, `${cmd} must not be found`);
  }
  const app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
  const install = ok(run(join(bin, 'npm'), ['install', '--offline', '--no-audit', '--no-fund', join(dir, info.filename)], { cwd: app, env }), 'npm install');
  assert.doesNotMatch(install.stdout + install.stderr, /install script|node-gyp|gyp /i, 'no install script runs, none is warned about');
  assert.ok(!existsSync(join(app, 'node_modules', 'mmapkit', 'build')), 'nothing was built');

  writeFileSync(join(app, 'use.mjs'), `
    import { spawn } from 'node:child_process';
    import { writeFileSync } from 'node:fs';
    import { Channel, SharedMemory, map } from 'mmapkit';
    if (process.argv[2] === 'child') {
      const requests = Channel.open(SharedMemory.inherited('requests'));
      const replies = Channel.open(SharedMemory.inherited('replies'));
      const m = requests.receive({ timeout: 20000 });
      replies.send(Buffer.concat([Buffer.from('echo:'), m]), { timeout: 20000 });
      replies.close();
      process.exit(0);
    }
    writeFileSync('data.bin', 'hello from a file');
    const m = map('data.bin');
    const text = m.buffer.toString();
    m.unmap();
    const geometry = { capacity: 16, maxMessageSize: 64 };
    const [a, b] = [SharedMemory.anonymous(Channel.byteLength(geometry)), SharedMemory.anonymous(Channel.byteLength(geometry))];
    const requests = Channel.create(a, geometry);
    const replies = Channel.create(b, geometry);
    const child = spawn(process.execPath, [process.argv[1], 'child'], a.childOptions(b.childOptions({ stdio: 'inherit' }, 'replies'), 'requests'));
    requests.send('ping', { timeout: 20000 });
    const reply = replies.receive({ timeout: 20000 }).toString();
    requests.close();
    const code = await new Promise((resolve) => child.on('exit', resolve));
    console.log(JSON.stringify({ text, reply, code }));
  `);
  const used = ok(run(process.execPath, ['use.mjs'], { cwd: app, env }), 'a program using the installed package');
  assert.deepEqual(JSON.parse(used.stdout.trim().split('\n').pop()), { text: 'hello from a file', reply: 'echo:ping', code: 0 });
  const demo = ok(run(join(bin, 'npx'), ['--offline', 'mmapkit', 'demo'], { cwd: app, env }), 'npx mmapkit demo');
  assert.match(demo.stdout, /All \d+ steps passed/);
  assert.deepEqual(readdirSync(join(app, 'node_modules', 'mmapkit', 'prebuilds')).sort(), [...Object.keys(TARGETS), 'manifest.json'].sort());
});

test('a binding that is missing, or that the loader refuses, is a clear error that says how to build from source', (t) => {
  const dir = tempDir(t);
  const load = (env, cwdRoot = ROOT) =>
    run(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(new URL(`file://${cwdRoot}/dist/index.js`).href)}).then(() => console.log('loaded'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`], {
      env: { ...process.env, ...env },
    });
  const outcome = (r) => JSON.parse(ok(r, 'load').stdout.trim());
  writeFileSync(join(dir, 'not-elf.node'), 'not a shared object');
  const cases = [
    [{ MMAPKIT_BINDING: join(dir, 'missing.node') }, 'ERR_MMAP_BINDING_NOT_FOUND', /MMAPKIT_BINDING names .*missing\.node, which does not exist/],
    [{ MMAPKIT_BINDING: join(dir, 'not-elf.node') }, 'ERR_MMAP_BINDING_LOAD_FAILED', /not-elf\.node could not be loaded \(.+\)\. Build it from source/],
    [{ MMAPKIT_BINDING: join(PREBUILDS, process.arch === 'arm64' ? 'linux-x64' : 'linux-arm64', 'mmapkit.node') }, 'ERR_MMAP_BINDING_LOAD_FAILED', /could not be loaded/],
  ];
  for (const [env, code, message] of cases) {
    const got = outcome(load(env));
    assert.equal(got.code, code, JSON.stringify(env));
    assert.match(got.message, message);
    assert.match(got.message, /npm explore mmapkit -- npm run build:native/);
  }
  // A package copy with neither a source build nor the prebuilt binary for this machine.
  const copy = join(dir, 'pkg');
  mkdirSync(copy);
  ok(run('cp', ['-r', join(ROOT, 'dist'), join(ROOT, 'package.json'), copy]), 'cp');
  const bare = outcome(load({ MMAPKIT_BINDING: '' }, copy));
  assert.equal(bare.code, 'ERR_MMAP_BINDING_NOT_FOUND');
  assert.match(bare.message, /the prebuilt binary for linux-(x64|arm64) is missing from the package/);
  // And with only the prebuilt binaries (no build/), the package loads them.
  ok(run('cp', ['-r', PREBUILDS, copy]), 'cp');
  assert.equal(load({ MMAPKIT_BINDING: '' }, copy).stdout.trim(), 'loaded');
});
