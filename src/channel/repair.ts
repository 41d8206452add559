/**
 * Repairs of parties that died. A producer that dies needs none: what it did not publish was never
 * visible, what it published stays queued in its lane for consumers, and its lane is taken over by
 * the next producer that attaches. A consumer that dies holding a lane (its LANE_READER lock) would
 * keep every other consumer from that lane: consumers that find a lane with records held by the same
 * holder for longer than STALL_NS check whether the holder is gone and, if so, take the lock back.
 * The records the dead consumer had not released (LANE_READ never moved past them) are then
 * delivered to the next consumer (docs/channel-layout.md, "Repairs").
 * @module
 */
import { CHANNEL, type Geometry, laneControl } from './layout.js';
import { holderGone } from './parties.js';

/** How long a lane with records may stay held by one holder before the holder is checked. */
const STALL_NS = 2_000_000n;
const READER = CHANNEL.LANE_READER >>> 2;
const WRITE = CHANNEL.LANE_WRITE >>> 2;
const READ = CHANNEL.LANE_READ >>> 2;

/** One consumer handle's watch over lanes held by others. */
export class HeldLanes {
  private readonly i32: Int32Array;
  private readonly g: Geometry;
  /** Per lane: the holder seen, and since when (process.hrtime.bigint()); 0n: not seen held. */
  private readonly holder: Int32Array;
  private readonly since: BigInt64Array;

  constructor(i32: Int32Array, g: Geometry) {
    this.i32 = i32;
    this.g = g;
    this.holder = new Int32Array(g.maxProducers);
    this.since = new BigInt64Array(g.maxProducers);
  }

  /**
   * Look at the lanes with records that are held by someone else than `me`: a holder seen on the same
   * lane for longer than STALL_NS is checked, and its lock taken back if it is gone. True when a lane
   * was freed (look for records again). `holding`: the lane this handle holds itself (-1: none).
   */
  check(lanesUsed: number, me: number, holding: number): boolean {
    const i32 = this.i32;
    // Most waits find no lane held by anyone: no clock then.
    let held = false;
    for (let lane = 0; lane < lanesUsed && !held; lane++) held = i32[(laneControl(this.g, lane) >>> 2) + READER] !== 0;
    if (!held) return false;
    const now = process.hrtime.bigint();
    let freed = false;
    for (let lane = 0; lane < lanesUsed; lane++) {
      const ctl = laneControl(this.g, lane) >>> 2;
      const holder = Atomics.load(i32, ctl + READER);
      if (holder === me && lane !== holding) {
        // Our own lock value on a lane we do not hold: written by someone else (only a peer that
        // writes garbage does that). Take it back at once.
        if (Atomics.compareExchange(i32, ctl + READER, holder, 0) === holder) freed = true;
        continue;
      }
      if (holder === 0 || holder === me || Atomics.load(i32, ctl + WRITE) === Atomics.load(i32, ctl + READ)) {
        this.since[lane] = 0n;
        continue;
      }
      if (this.holder[lane] !== holder || this.since[lane] === 0n) {
        this.holder[lane] = holder;
        this.since[lane] = now;
        continue;
      }
      if (now - this.since[lane]! < STALL_NS || !holderGone(i32, this.g, holder)) continue;
      // seq_cst compare-and-swap: only if the same holder still has it (it may have let go since).
      if (Atomics.compareExchange(i32, ctl + READER, holder, 0) === holder) freed = true;
      this.since[lane] = 0n;
    }
    return freed;
  }
}
