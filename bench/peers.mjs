/**
 * Child processes of the benchmarks that start peers (bench/channel.mjs, bench/topic.mjs): one pool
 * per module, which knows the peer script, the extra Node flags (a profile run adds --cpu-prof), the
 * children still alive, and the hard limit of a run; and zeromq.js, loaded when it can be.
 */
import { killChild, startChild } from './ipc-latency.mjs';

/**
 * zeromq.js, a devDependency of the repository only (an installed mmapkit has no devDependencies):
 * the module, or null when it cannot be loaded (its rows are then skipped, and the notes say so).
 */
let zmqModule;
export async function loadZmq() {
  if (zmqModule === undefined) {
    try {
      zmqModule = await import('zeromq');
    } catch {
      zmqModule = null;
    }
  }
  return zmqModule;
}

/** The peers of one benchmark module: `peer` is the script its children run. */
export function peerPool(peer) {
  let execArgv = [];
  /** The children of this pool's runs that have not exited yet (runs are sequential). */
  const live = new Set();
  return {
    /** Node flags for the children from now on (a profile run adds --cpu-prof). */
    setExecArgv(argv) {
      execArgv = [...argv];
    },
    /** startChild() of bench/ipc-latency.mjs with this pool's peer, the child registered as live. */
    spawn(config, options) {
      const child = startChild(config, options, undefined, peer, execArgv);
      live.add(child);
      child.done.then(() => live.delete(child));
      return child;
    },
    /**
     * Run `fn()` with a hard limit: a run that has not settled after `ms` is failed and its children
     * killed, whatever it waits for (every wait has a timeout of its own: this is the last resort).
     */
    async withLimit(ms, what, fn) {
      let timer;
      const limit = new Promise((_, reject) => {
        timer = setTimeout(() => {
          for (const child of live) killChild(child);
          reject(new Error(`${what}: not done within the hard limit of ${ms / 1000} s`));
        }, ms);
      });
      try {
        return await Promise.race([fn(), limit]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
