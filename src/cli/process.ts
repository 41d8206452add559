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
  /** Called with each line the process prints (without the newline), as soon as it is complete. */
  readonly onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
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

/** A process started by {@link startProcess}. */
export interface RunningProcess {
  /** Its pid (undefined when it could not be started). */
  readonly pid: number | undefined;
  /** Settles like {@link runProcess}: when it has exited and its output is complete. */
  readonly done: Promise<RunResult>;
  /**
   * Resolves true as soon as the process has printed a stdout line matching `pattern` (earlier lines
   * count), false if it ends first or `timeoutMs` passes.
   */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<boolean>;
  /** Kill it (SIGKILL) if it is still running. */
  kill(): void;
}

/**
 * Start `file args...` and return at once; collect its output, line by line, until it exits or
 * `timeoutMs` runs out (then it is killed). For two processes that must run at the same time.
 */
export function startProcess(file: string, args: readonly string[], options: RunOptions): RunningProcess {
  const child = spawn(file, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const stdoutLines: string[] = [];
  const watchers = new Set<() => void>();
  let ended = false;
  const lineSplitter = (stream: 'stdout' | 'stderr'): { push(chunk: Buffer): void; end(): void } => {
    let partial = '';
    const emit = (line: string): void => {
      if (stream === 'stdout') stdoutLines.push(line);
      options.onLine?.(line, stream);
      for (const check of watchers) check();
    };
    return {
      push(chunk) {
        const lines = (partial + chunk.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) emit(line);
      },
      end() {
        if (partial !== '') emit(partial);
        partial = '';
      },
    };
  };
  const outLines = lineSplitter('stdout');
  const errLines = lineSplitter('stderr');
  child.stdout.on('data', (chunk: Buffer) => {
    stdout.push(chunk);
    outLines.push(chunk);
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr.push(chunk);
    errLines.push(chunk);
  });
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
  const done = new Promise<RunResult>((resolve, reject) => {
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
      outLines.end();
      errLines.end();
      resolve({
        code,
        signal,
        timedOut,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    });
  }).finally(() => {
    ended = true;
    for (const check of watchers) check();
  });
  // Whoever started the process awaits `done` later; a failed start must not count as unhandled meanwhile.
  done.catch(() => {});
  return {
    pid: child.pid,
    done,
    waitForLine(pattern, timeoutMs) {
      return new Promise((resolve) => {
        let timeout: NodeJS.Timeout | undefined;
        const check = (): void => {
          const found = stdoutLines.some((line) => pattern.test(line));
          if (!found && !ended) return;
          watchers.delete(check);
          clearTimeout(timeout);
          resolve(found);
        };
        timeout = setTimeout(() => {
          watchers.delete(check);
          resolve(stdoutLines.some((line) => pattern.test(line)));
        }, timeoutMs);
        watchers.add(check);
        check();
      });
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * Start `file args...`, collect its output and wait for it to exit, for at most `timeoutMs`.
 * Resolves whatever the exit code; rejects only when the process cannot be started.
 */
export function runProcess(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return startProcess(file, args, options).done;
}
