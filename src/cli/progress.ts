/**
 * A one-line progress bar on a terminal, for commands that may run long (`mmapkit cp`). It appears
 * only when the stream is a terminal and the work has taken longer than a delay (1 s, or
 * `MMAPKIT_PROGRESS_DELAY_MS`), redraws at most ten times a second, and erases itself at the end.
 * On anything else than a terminal it prints nothing at all.
 * @module
 */
import { formatBytes } from './messages.js';

/** Where the bar is drawn: a writable stream that may be a terminal. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

/** Default delay before the bar appears, in milliseconds. */
const DEFAULT_DELAY_MS = 1000;
/** Minimum time between two redraws, in milliseconds. */
const REDRAW_MS = 100;

/** The delay before the bar appears: `MMAPKIT_PROGRESS_DELAY_MS` when set to a number, else 1 s. */
function delayFromEnv(): number {
  const text = process.env['MMAPKIT_PROGRESS_DELAY_MS'];
  if (text === undefined || text === '') return DEFAULT_DELAY_MS;
  const n = Number(text);
  return Number.isFinite(n) && n >= 0 ? n : DEFAULT_DELAY_MS;
}

/** Progress of a job of `total` bytes, drawn on `stream` when it is a terminal. */
export class Progress {
  readonly #stream: ProgressStream;
  readonly #total: number;
  readonly #label: string;
  readonly #enabled: boolean;
  readonly #delay: number;
  readonly #start = performance.now();
  #lastDraw = -Infinity;
  #shown = false;

  constructor(stream: ProgressStream, total: number, label: string) {
    this.#stream = stream;
    this.#total = total;
    this.#label = label;
    this.#enabled = stream.isTTY === true;
    this.#delay = delayFromEnv();
  }

  /** `done` bytes of the total are done: redraw if it is time to. */
  update(done: number): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#start < this.#delay || now - this.#lastDraw < REDRAW_MS) return;
    this.#lastDraw = now;
    this.#shown = true;
    this.#stream.write(`\r${this.#line(done, now)}\x1b[K`);
  }

  /** The job has ended (well or not): erase the bar, leaving the cursor at the start of an empty line. */
  finish(): void {
    if (this.#shown) this.#stream.write('\r\x1b[K');
    this.#shown = false;
  }

  #line(done: number, now: number): string {
    const fraction = this.#total === 0 ? 1 : Math.min(1, done / this.#total);
    const seconds = (now - this.#start) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 ? Math.max(0, (this.#total - done) / rate) : undefined;
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    const figures =
      ` ${formatBytes(done)} / ${formatBytes(this.#total)}  ${formatBytes(Math.round(rate))}/s` +
      (eta === undefined ? '' : `  ETA ${clock(eta)}`);
    const columns = this.#stream.columns !== undefined && this.#stream.columns > 0 ? this.#stream.columns : 80;
    // label, percent, bar, figures; the bar takes what is left (at least 10 columns, else no bar).
    const head = `${this.#label} ${percent} `;
    const width = columns - 1 - head.length - figures.length - 2;
    if (width < 10) return `${head}${figures}`.slice(0, columns - 1);
    const filled = Math.floor(fraction * width);
    const bar = `[${'='.repeat(filled)}${filled < width ? '>' : ''}${' '.repeat(Math.max(0, width - filled - 1))}]`;
    return `${head}${bar}${figures}`;
  }
}

/** Seconds as `m:ss` or `h:mm:ss`. */
function clock(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
