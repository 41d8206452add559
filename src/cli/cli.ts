/**
 * The `mmapkit` command line, without the process around it (src/cli/main.ts is the executable).
 * Global options come before the command (`mmapkit --help`, `mmapkit --version`,
 * `mmapkit --debug demo`); `--debug` is also taken after it, as an option of every command. Each
 * command is a {@link Command} in its own module, registered in {@link COMMANDS}.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error (unknown command or option, wrong arguments), 141
 * standard output closed by its reader (as for SIGPIPE: `EXIT_CLOSED_OUTPUT` of src/cli/messages.ts,
 * returned by a command such as recv, or the exit of src/cli/main.ts when stdout fails with EPIPE).
 * Errors go to stderr as one line (a usage error adds a second that points to `--help`); `--debug`
 * adds the stack trace.
 * @module
 */
import { benchCommand } from './bench.js';
import { type Command, UsageError, commandHelp, parseCommandArgs, table } from './command.js';
import { cpCommand } from './cp.js';
import { demoCommand } from './demo.js';
import { dumpCommand } from './dump.js';
import { packageVersion } from './package-info.js';
import { recvCommand } from './recv.js';
import { sendCommand } from './send.js';

/** The program name in messages. */
const PROGRAM = 'mmapkit';

/** Every command, in the order `--help` lists them. A new command is added here. */
export const COMMANDS: readonly Command[] = [cpCommand, dumpCommand, sendCommand, recvCommand, demoCommand, benchCommand];

/** Exit codes that {@link main} gives itself; a command may also return `EXIT_CLOSED_OUTPUT` (141). */
export const ExitCode = { ok: 0, failure: 1, usage: 2 } as const;

function mainHelp(): string {
  const commands = table([
    ...COMMANDS.map((c): [string, string] => [c.name, c.summary]),
    ['help [COMMAND]', 'Show the help of mmapkit or of a command'],
  ]);
  const options = table([
    ['-h, --help', 'Show this help'],
    ['-V, --version', 'Print the version of mmapkit'],
    ['    --debug', 'Show stack traces of errors'],
  ]);
  return (
    `Usage: ${PROGRAM} [--debug] COMMAND [options]\n\n` +
    'Memory mapping for Node.js, from the command line.\n\n' +
    `Commands:\n${commands}\n\nOptions:\n${options}\n\n` +
    `Run '${PROGRAM} COMMAND --help' for the options of a command.\n` +
    'Exit codes: 0 success, 1 failure, 2 usage error, 141 standard output closed by its reader.\n'
  );
}

function findCommand(name: string): Command {
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) throw new UsageError(`unknown command '${name}'`);
  return command;
}

const out = (text: string): void => {
  process.stdout.write(text);
};
const err = (text: string): void => {
  process.stderr.write(text);
};

/**
 * Run the CLI with `argv` (the arguments after the script name). Resolves to the exit code; never
 * throws: errors are printed to stderr.
 */
export async function main(argv: readonly string[]): Promise<number> {
  // --debug can appear before or after the command; look for it before anything can fail.
  const dashDash = argv.indexOf('--');
  let debug = (dashDash === -1 ? argv : argv.slice(0, dashDash)).includes('--debug');
  let command: Command | undefined;
  try {
    // Global options, up to the command name.
    let i = 0;
    for (; i < argv.length; i++) {
      const arg = argv[i]!;
      if (arg === '--') {
        i++;
        break;
      }
      if (!arg.startsWith('-') || arg === '-') break;
      if (arg === '--help' || arg === '-h') {
        out(mainHelp());
        return ExitCode.ok;
      }
      if (arg === '--version' || arg === '-V') {
        out(`${packageVersion()}\n`);
        return ExitCode.ok;
      }
      if (arg === '--debug') continue;
      throw new UsageError(`unknown option '${arg}'`);
    }
    const name = argv[i];
    if (name === undefined) {
      err(mainHelp());
      throw new UsageError('missing command');
    }
    const rest = argv.slice(i + 1);

    if (name === 'help') {
      const topic = rest.find((a) => !a.startsWith('-'));
      out(topic === undefined ? mainHelp() : commandHelp(PROGRAM, findCommand(topic)));
      return ExitCode.ok;
    }

    command = findCommand(name);
    const { values, positionals } = parseCommandArgs(command, rest);
    debug ||= values['debug'] === true;
    if (values['help'] === true) {
      out(commandHelp(PROGRAM, command));
      return ExitCode.ok;
    }
    return await command.run({ values, positionals, out, err });
  } catch (error) {
    return report(error, command, debug);
  }
}

/** Print an error the way the CLI does and return its exit code. */
function report(error: unknown, command: Command | undefined, debug: boolean): number {
  if (error instanceof UsageError) {
    const helpOf = error.command ?? command?.name;
    err(`${PROGRAM}: ${error.message}\nRun '${PROGRAM} ${helpOf === undefined ? '' : `${helpOf} `}--help' for usage.\n`);
    if (debug && error.stack !== undefined) err(`${error.stack}\n`);
    return ExitCode.usage;
  }
  const where = command === undefined ? PROGRAM : `${PROGRAM} ${command.name}`;
  err(`${where}: ${describe(error)}\n`);
  if (debug) err(`${error instanceof Error && error.stack !== undefined ? error.stack : String(error)}\n`);
  return ExitCode.failure;
}

/** One line for an error: its message, and its code when the message does not already say it. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
}

