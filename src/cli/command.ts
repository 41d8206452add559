/**
 * The shape every `mmapkit` subcommand has, argument parsing, help text, and {@link UsageError} (the
 * error of a mistake on the command line; an ordinary failure is a `Failure`, src/cli/messages.ts). A
 * command is a {@link Command} object in its own module (src/cli/demo.ts, ...) listed in `COMMANDS`
 * in src/cli/cli.ts.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** One option of a command, as parsed by `node:util` `parseArgs` and shown by `--help`. */
export interface OptionDef {
  /** `'boolean'` for a flag, `'string'` for an option that takes a value. */
  readonly type: 'boolean' | 'string';
  /** One-letter alias (`-k`). */
  readonly short?: string;
  /** Placeholder of the value in the help (`--size BYTES`); string options only. */
  readonly valueName?: string;
  /** One line for `--help`. */
  readonly description: string;
}

/** Options every command accepts besides its own. */
export const COMMON_OPTIONS: Readonly<Record<string, OptionDef>> = {
  help: { type: 'boolean', short: 'h', description: 'Show this help' },
  debug: { type: 'boolean', description: 'Show stack traces of errors' },
};

/** Values of the options given on the command line (absent options are missing). */
export type OptionValues = Readonly<Record<string, string | boolean | undefined>>;

/** What a command receives: its parsed arguments and where to print. */
export interface CommandContext {
  /** Option values, including the common ones (`help`, `debug`). */
  readonly values: OptionValues;
  /** Positional arguments. */
  readonly positionals: readonly string[];
  /** Write to standard output (add the newline yourself). */
  readonly out: (text: string) => void;
  /** Write to standard error (add the newline yourself). */
  readonly err: (text: string) => void;
}

/** A subcommand of `mmapkit`. */
export interface Command {
  /** The word after `mmapkit`. */
  readonly name: string;
  /** One line for the command list of `mmapkit --help`. */
  readonly summary: string;
  /** Usage line without the program name, for example `demo [--keep]`. */
  readonly synopsis: string;
  /** Paragraphs shown by `mmapkit COMMAND --help` after the usage line. */
  readonly description: string;
  /** The command's own options (the {@link COMMON_OPTIONS} are added). */
  readonly options: Readonly<Record<string, OptionDef>>;
  /** How many positional arguments the command takes. */
  readonly positionals: { readonly min: number; readonly max: number };
  /** Run the command. Resolves to the exit code; throws {@link UsageError} or any error on failure. */
  run(ctx: CommandContext): Promise<number>;
}

/** A mistake on the command line: exit code 2, with a hint to `--help`. */
export class UsageError extends Error {
  /** The command whose help the hint points to, when known. */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
  override get name(): string {
    return 'UsageError';
  }
}

/** Parse a command's arguments (its own options plus the common ones) into a {@link CommandContext}'s fields. */
export function parseCommandArgs(
  command: Command,
  argv: readonly string[],
): { values: OptionValues; positionals: readonly string[] } {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, def] of Object.entries({ ...COMMON_OPTIONS, ...command.options })) {
    options[name] = def.short === undefined ? { type: def.type } : { type: def.type, short: def.short };
  }
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (err) {
    // parseArgs reports unknown options and missing values as ERR_PARSE_ARGS_* TypeErrors.
    if (isParseArgsError(err)) {
      // parseArgs's own message for an unknown option gives advice about '--' that is off the point.
      const unknown = err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'([^']*)'/.exec(err.message)?.[1] : undefined;
      if (unknown !== undefined) throw new UsageError(`unknown option '${unknown}'`, command.name);
      // "--offset -5": parseArgs will not take a value that starts with '-', and says so in three lines.
      const ambiguous = /^Option '([^']*)' argument is ambiguous/.exec(err.message)?.[1];
      const next = ambiguous === undefined ? undefined : argv[argv.indexOf(ambiguous) + 1];
      if (ambiguous !== undefined && next !== undefined) {
        const long = ambiguous.startsWith('--') ? ambiguous : `--${longName(command, ambiguous.slice(1)) ?? ambiguous.slice(1)}`;
        throw new UsageError(`the value of '${ambiguous}' starts with '-': write ${long}=${next} if '${next}' is meant as its value`, command.name);
      }
      throw new UsageError(err.message.split('\n')[0] ?? err.message, command.name);
    }
    throw err;
  }
  const values: Record<string, string | boolean | undefined> = {};
  for (const [name, value] of Object.entries(parsed.values)) {
    values[name] = Array.isArray(value) ? value[value.length - 1] : value;
  }
  if (values['help'] !== true) {
    const n = parsed.positionals.length;
    const { min, max } = command.positionals;
    if (n < min || n > max) {
      const expected = min === max ? `${min}` : max === Infinity ? `at least ${min}` : `${min} to ${max}`;
      const extra = n > max ? `: unexpected '${parsed.positionals[max] ?? ''}'` : '';
      throw new UsageError(`'${command.name}' takes ${expected} argument(s), got ${n}${extra}`, command.name);
    }
  }
  return { values, positionals: parsed.positionals };
}

/** The long name of the option whose one-letter alias is `short`. */
function longName(command: Command, short: string): string | undefined {
  return Object.entries({ ...COMMON_OPTIONS, ...command.options }).find(([, def]) => def.short === short)?.[0];
}

function isParseArgsError(err: unknown): err is Error & { code: string } {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS_');
}

/** The help text of a command (`mmapkit COMMAND --help`). */
export function commandHelp(program: string, command: Command): string {
  const rows = Object.entries({ ...command.options, ...COMMON_OPTIONS }).map(([name, def]): [string, string] => {
    const short = def.short === undefined ? '    ' : `-${def.short}, `;
    const value = def.type === 'string' ? ` ${def.valueName ?? 'VALUE'}` : '';
    return [`${short}--${name}${value}`, def.description];
  });
  return `Usage: ${program} ${command.synopsis}\n\n${command.description.trim()}\n\nOptions:\n${table(rows)}\n`;
}

/** Two aligned columns, indented by two spaces. */
export function table(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`).join('\n');
}
