#!/usr/bin/env node
/**
 * A/B of the in-process hot paths of two builds: `node bench/ab.mjs DIST_A DIST_B [rounds]`, where each
 * DIST is a compiled dist/ folder (for example of a `git worktree` at another commit, built with tsc).
 * Runs each build in its own process, alternating A and B, `rounds` times (default 7), and prints the
 * median ns per operation of each and their ratio B/A:
 *   channel send → receive (one 64-byte message), channel sendMany(64) → receiveMany(64) per message,
 *   topic publish → receive, topic publishMany(64) → receiveMany(64) per message.
 * One process, no waiting: what a refactor changes in the code of a message, not the cost of waking
 * another process (bench/run.mjs measures that). Pin it to one CPU on a busy machine (`taskset -c 1`).
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const N = 200_000;

async function measure(dist) {
  const { Channel, Topic, SharedMemory } = await import(`${resolve(dist)}/index.js`);
  const msg = Buffer.alloc(64, 7);
  const batch = Array.from({ length: 64 }, () => msg);
  const best = (fn) => {
    let b = Infinity;
    for (let r = 0; r < 7; r++) {
      const t0 = process.hrtime.bigint();
      fn();
      b = Math.min(b, Number(process.hrtime.bigint() - t0) / N);
    }
    return b;
  };
  const geometry = { capacity: 8192, maxMessageSize: 128 };
  const chShm = SharedMemory.anonymous(Channel.byteLength(geometry));
  Channel.create(chShm, geometry).close();
  const tx = Channel.open(chShm);
  const rx = Channel.open(chShm);
  const topicGeometry = { capacity: 1 << 20, maxMessageSize: 1024 };
  const topic = Topic.create(SharedMemory.anonymous(Topic.byteLength(topicGeometry)), topicGeometry);
  const sub = topic.subscribe();
  return {
    channelSendReceive: best(() => { for (let i = 0; i < N; i++) { tx.send(msg); rx.receive(); } }),
    channelBatch: best(() => { for (let i = 0; i < N; i += 64) { tx.sendMany(batch); rx.receiveMany(64); } }),
    topicPublishReceive: best(() => { for (let i = 0; i < N; i++) { topic.publish(msg); sub.receive(); } }),
    topicBatch: best(() => { for (let i = 0; i < N; i += 64) { topic.publishMany(batch); sub.receiveMany(64); } }),
  };
}

if (process.argv[2] === '--child') {
  console.log(JSON.stringify(await measure(process.argv[3])));
} else {
  const [a, b, roundsArg] = process.argv.slice(2);
  if (!a || !b) {
    console.error('usage: node bench/ab.mjs DIST_A DIST_B [rounds]');
    process.exit(2);
  }
  const rounds = Number(roundsArg ?? 7);
  const runs = { A: [], B: [] };
  for (let r = 0; r < rounds; r++) {
    for (const [k, dist] of [['A', a], ['B', b]]) {
      const p = spawnSync(process.execPath, [new URL(import.meta.url).pathname, '--child', dist], { encoding: 'utf8', timeout: 120_000 });
      if (p.status !== 0) throw new Error(`${k} (${dist}) failed: ${p.stderr}`);
      runs[k].push(JSON.parse(p.stdout.trim().split('\n').pop()));
    }
  }
  const median = (xs) => xs.slice().sort((x, y) => x - y)[xs.length >> 1];
  console.log(`| ns per message (median of ${rounds}) | A | B | B/A |\n| --- | ---: | ---: | ---: |`);
  for (const key of Object.keys(runs.A[0])) {
    const ma = median(runs.A.map((x) => x[key]));
    const mb = median(runs.B.map((x) => x[key]));
    console.log(`| ${key} | ${ma.toFixed(1)} | ${mb.toFixed(1)} | ${(mb / ma).toFixed(3)} |`);
  }
}
