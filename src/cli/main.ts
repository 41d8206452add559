#!/usr/bin/env node
/**
 * The `mmapkit` executable (package.json "bin"): runs {@link main} with the process's arguments and
 * exits with its code. See src/cli/cli.ts for the commands, options and exit codes.
 * @module
 */
import { main } from './cli.js';
import { EXIT_CLOSED_OUTPUT } from './messages.js';

// A closed stdout (`mmapkit demo | head -1`) is not an error worth a stack trace: end quietly with
// the code a shell gives a process killed by SIGPIPE, as for any command in a pipeline.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(EXIT_CLOSED_OUTPUT);
  throw error;
});

process.exitCode = await main(process.argv.slice(2));
