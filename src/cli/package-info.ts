/**
 * Where the CLI finds the files of its own package: package.json (for `--version`) and examples/
 * (for `demo`). Both sit two levels above this module (dist/cli/ → the package root).
 * @module
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Absolute path of the package root (the folder holding package.json), ending with a slash. */
export const packageRoot: string = fileURLToPath(new URL('../../', import.meta.url));

/** Absolute path of the package's examples/ folder, ending with a slash. */
export const examplesDir: string = fileURLToPath(new URL('../../examples/', import.meta.url));

/** The `version` field of the package's package.json. */
export function packageVersion(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  const manifest: unknown = JSON.parse(text);
  if (typeof manifest === 'object' && manifest !== null && 'version' in manifest && typeof manifest.version === 'string') {
    return manifest.version;
  }
  throw new Error(`${packageRoot}package.json has no version`);
}
