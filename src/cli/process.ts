/**
 * Running other processes from CLI commands: always with a deadline, never inheriting stdin.
 * @module
 */
import { spawn } from 'node:child_process';

/** How long to keep reading output after the process exited (its children may hold the pipes). */
const EXIT_GRACE_MS = 2000;

/** Options of {@link runProcess}. */
export interface RunOptions {
  /** Kill the process (SIGKILL) after this many milliseconds. */
  readonly timeoutMs: number;
  /** Working directory. Default: this process's. */
  readonly cwd?: string;
  /** Environment. Default: this process's. */
  readonly env?: NodeJS.ProcessEnv;
}

/** How a process ended and what it printed. */
export interface RunResult {
  /** Exit code, or `null` when a signal ended it. */
  readonly code: number | null;
  /** The signal that ended it, or `null`. */
  readonly signal: NodeJS.Signals | null;
  /** Whether {@link RunOptions.timeoutMs} ran out and the process was killed. */
  readonly timedOut: boolean;
  /** Everything it wrote to stdout, as UTF-8. */
  readonly stdout: string;
  /** Everything it wrote to stderr, as UTF-8. */
  readonly stderr: string;
}

/**
 * Start `file args...`, collect its output and wait for it to exit, for at most `timeoutMs`.
 * Resolves whatever the exit code; rejects only when the process cannot be started.
 */
export function runProcess(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      ...(options.env === undefined ? {} : { env: options.env }),
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    // A grandchild that inherited the pipes can keep them open after the child is gone: stop waiting
    // for the output then, or the deadline would not hold.
    const stopReading = (): void => {
      child.stdout.destroy();
      child.stderr.destroy();
    };
    let timedOut = false;
    let grace: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      stopReading();
    }, options.timeoutMs);
    child.once('exit', () => {
      grace = setTimeout(stopReading, EXIT_GRACE_MS);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      clearTimeout(grace);
      reject(err);
    });
    // 'close' (not 'exit'): the output streams are complete.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(grace);
      resolve({
        code,
        signal,
        timedOut,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    });
  });
}
