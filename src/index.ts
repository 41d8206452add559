/**
 * mmapkit: memory mapping for Node.js. This file only re-exports; see docs/api.md.
 * @module
 */
export {
  map,
  mapAnonymous,
  mappingCount,
  Mapping,
  MAX_VIEW_LENGTH,
  type Access,
  type Advice,
  type AnonymousOptions,
  type MapOptions,
  type PathLike,
  type Protection,
  type Range,
  type ResizeOptions,
} from './mapping.js';
export { mmap, munmap, msync, mprotect, madvise, mincore, mlock, munlock, lseek, type Address } from './posix.js';
export { constants, pageSize, type Constants } from './constants.js';
export { MmapkitError, type MmapkitErrorCode, type SystemError } from './internal/errors.js';
export { type Int64Like } from './internal/validators.js';
export { guardInstalled } from './guard.js';
export { wait, waitAsync, notify, type WaitResult, type WaitAsyncOptions } from './wait.js';
export {
  SharedMemory,
  SHM_NAME_MAX,
  INHERIT_ENV,
  type SharedMemoryCreateOptions,
  type SharedMemoryCreateAllOptions,
  type SharedMemoryHandle,
  type SharedMemoryOpenOptions,
  type SharedMemoryFdOptions,
  type SharedMemoryAnonymousOptions,
  type ChildShareOptions,
  type StdioArray,
} from './shm.js';
export { type HugePages } from './internal/hugepages.js';
export { type OwnershipOptions, type OwnerOption, type SharedWithOption, type OwnershipError } from './ownership.js';
export { Mutex, Semaphore, Event, type LockResult, type MutexKind, type MutexOptions, type SyncTarget } from './sync.js';
export { HEADER } from './header.js';
export {
  Channel,
  CHANNEL,
  type ChannelCreateOptions,
  type ChannelEndReason,
  type ChannelInspection,
  type ChannelOpenOptions,
  type ChannelTarget,
  type ChannelWaitOptions,
  type DrainHandler,
  type InPlaceMessage,
  type LengthsArray,
  type Reservation,
  type WaitStrategy,
} from './channel/channel.js';
export { type ProducerReport, type ConsumerReport } from './channel/parties.js';
export {
  Topic,
  Subscription,
  type TopicCreateOptions,
  type TopicOpenOptions,
  type SubscribeOptions,
  type TopicReservation,
  type TopicDrainHandler,
  type TopicEndReason,
  type TopicInspection,
  type TopicPolicy,
} from './topic/topic.js';
export { TOPIC } from './topic/layout.js';
export { type PublisherReport, type SubscriberReport } from './topic/parties.js';
export { type SharedTarget } from './target.js';
