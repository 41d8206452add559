/**
 * Who may own, and who else may reach, a named shared memory object before this process attaches to
 * it. Every user can create names in /dev/shm, so a name is no proof of who made it: another user can
 * create it first (mode 0666) and then read or forge everything that goes through it. The check runs
 * on the opened descriptor (`fstat`), never on the name, so the object checked is the object mapped.
 * The same rules, looking at write bits only, guard a file that `map()` with `size` (and so
 * `Channel.create(path)`, `Topic.create(path)`) may create or grow: in a sticky shared directory such
 * as /tmp another user can create the path first.
 * @module
 */
import { fstatSync, readFileSync } from 'node:fs';
import { invalidArgType, invalidArgValue, mmapkitError, type MmapkitError } from './internal/errors.js';
import { validateInt64, validateOneOf } from './internal/validators.js';

/**
 * Whose object {@link SharedMemory.open} (and `Channel.open({ name })`), or whose existing file
 * `map()` with `size`, accepts: `'self'` (the effective uid of this process, the default), `'any'`
 * (any owner, on purpose), or one uid.
 */
export type OwnerOption = 'self' | 'any' | number;

/**
 * Whom besides its owner an accepted object may let in through its mode (read or write bits):
 * `'nobody'` (the default: no group or other read/write bits), `'group'` (group bits allowed when
 * the object's group is one of this process's groups; no other bits), `'anyone'` (no check of the
 * mode).
 */
export type SharedWithOption = 'nobody' | 'group' | 'anyone';

/** The owner and mode check of opening a named shared memory object. */
export interface OwnershipOptions {
  /**
   * Accept an object owned by this user only (`'self'`, default), by a given uid, or by anyone
   * (`'any'`). An object of another owner is `ERR_MMAP_NOT_OWNER`: its owner can read and write
   * everything in it.
   */
  owner?: OwnerOption;
  /**
   * Accept an object whose mode lets others read or write it: `'nobody'` (default), `'group'`,
   * `'anyone'`. A refused mode is `ERR_MMAP_UNSAFE_PERMISSIONS`. Execute bits are not looked at.
   */
  sharedWith?: SharedWithOption;
}

/** The option names of {@link OwnershipOptions}, for `validateOptions`. */
export const OWNERSHIP_OPTIONS = ['owner', 'sharedWith'] as const;

/** A checked {@link OwnershipOptions}: the uid required (or any), and the mode bits accepted. */
export interface OwnershipPolicy {
  readonly owner: number | 'any';
  readonly sharedWith: SharedWithOption;
  /**
   * Which group and other bits `sharedWith` is about: `'read-write'` (shared memory, the default) or
   * `'write'` (files: a file's read bits come from its owner's umask, 0644 by default, and only its
   * owner can set them; its write bits are what would let others forge what goes through it).
   */
  readonly bits?: 'read-write' | 'write';
}

/** The largest uid (Linux uids are 32 bits; 2^32 - 1 is the "no uid" value of chown). */
const UID_MAX = 0xfffffffe;
const GROUP_RW = 0o060;
const OTHER_RW = 0o006;
const GROUP_W = 0o020;
const OTHER_W = 0o002;

/** What an ownership refusal carries besides its code and message. */
export interface OwnershipError extends MmapkitError {
  readonly code: 'ERR_MMAP_NOT_OWNER' | 'ERR_MMAP_UNSAFE_PERMISSIONS';
  /** The shared memory name (`/name`), or the path of the file. */
  readonly path: string;
  /** The object's owner. */
  readonly uid: number;
  /** The object's group. */
  readonly gid: number;
  /** The object's permission bits (`mode & 0o777`). */
  readonly mode: number;
}

/** The effective uid of this process. */
export function effectiveUid(): number {
  return process.geteuid?.() ?? -1;
}

/** Check `owner` and `sharedWith` (under `prefix`, for messages); defaults: this user, nobody else. */
export function parseOwnership(o: Partial<Record<(typeof OWNERSHIP_OPTIONS)[number], unknown>>, prefix = 'options'): OwnershipPolicy {
  let owner: number | 'any' = effectiveUid();
  const given = o.owner;
  if (typeof given === 'number') {
    owner = Number(validateInt64(given, `${prefix}.owner`, 0n, BigInt(UID_MAX)));
  } else if (typeof given === 'string') {
    if (given === 'any') owner = 'any';
    else if (given !== 'self') throw invalidArgValue(`${prefix}.owner`, given, "must be 'self', 'any' or a uid");
  } else if (given !== undefined) {
    throw invalidArgType(`${prefix}.owner`, "'self', 'any' or a uid (a number)", given);
  }
  let sharedWith: SharedWithOption = 'nobody';
  const shared = o.sharedWith;
  if (shared !== undefined) {
    if (typeof shared !== 'string') throw invalidArgType(`${prefix}.sharedWith`, 'of type string', shared);
    sharedWith = validateOneOf(shared, `${prefix}.sharedWith`, ['nobody', 'group', 'anyone'] as const);
  }
  return { owner, sharedWith };
}

/** The policy that accepts exactly what a `mode` given to `create` lets in (for `exclusive: false`). */
export function policyForMode(mode: number): OwnershipPolicy {
  const sharedWith: SharedWithOption = (mode & OTHER_RW) !== 0 ? 'anyone' : (mode & GROUP_RW) !== 0 ? 'group' : 'nobody';
  return { owner: effectiveUid(), sharedWith };
}

/**
 * The policy of a file that `map()` with `size` may create or grow: `owner` and `sharedWith` as given
 * (checked under `prefix`), by default this user, and whom the write bits of `mode` (the mode a new file
 * gets) let write. Only group and other write bits are looked at (see {@link OwnershipPolicy.bits}).
 */
export function filePolicy(o: Partial<Record<(typeof OWNERSHIP_OPTIONS)[number], unknown>>, mode: number, prefix = 'options'): OwnershipPolicy {
  const given = parseOwnership(o, prefix);
  const fromMode: SharedWithOption = (mode & OTHER_W) !== 0 ? 'anyone' : (mode & GROUP_W) !== 0 ? 'group' : 'nobody';
  return { owner: given.owner, sharedWith: o.sharedWith === undefined ? fromMode : given.sharedWith, bits: 'write' };
}

/** This process's groups: the effective gid and the supplementary groups. */
export function ownGroups(): Set<number> {
  const groups = new Set<number>(process.getgroups?.() ?? []);
  const egid = process.getegid?.();
  if (egid !== undefined) groups.add(egid);
  return groups;
}

/** The identity of an object, as `fstat` reports it. */
export interface ObjectIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
}

/** Why a policy refuses an object: which check failed, what was found, and the option that accepts it. */
export interface OwnershipVerdict {
  readonly code: OwnershipError['code'];
  /** A sentence about the object (its owner or its mode), following its name. */
  readonly why: string;
  /** The option that accepts it: `{ owner: 1001 } (or { owner: 'any' })`, `{ sharedWith: 'group' }`. */
  readonly accept: string;
  /** That option, as a change of the policy. */
  readonly accepts: { readonly owner: number } | { readonly sharedWith: SharedWithOption };
}

/** Why `policy` refuses an object of this identity, or undefined if it accepts it. */
export function ownershipVerdict(id: ObjectIdentity, policy: OwnershipPolicy): OwnershipVerdict | undefined {
  const mode = id.mode & 0o777;
  if (policy.owner !== 'any' && id.uid !== policy.owner) {
    const self = policy.owner === effectiveUid();
    return {
      code: 'ERR_MMAP_NOT_OWNER',
      why: `belongs to ${describeUser(id.uid)}, mode ${octal(mode)}, not to ${self ? "this process's user, " : ''}${describeUser(policy.owner)}: its owner can read and write everything in it`,
      accept: `{ owner: ${id.uid} } (or { owner: 'any' })`,
      accepts: { owner: id.uid },
    };
  }
  if (policy.sharedWith === 'anyone') return undefined;
  // The bits that refuse (a file's write bits, or shared memory's read and write bits); the message
  // names every read and write bit that is set.
  const looked = policy.bits === 'write' ? { group: GROUP_W, other: OTHER_W } : { group: GROUP_RW, other: OTHER_RW };
  const others = mode & OTHER_RW;
  if ((mode & looked.other) !== 0) {
    return {
      code: 'ERR_MMAP_UNSAFE_PERMISSIONS',
      why: `has mode ${octal(mode)} (owner ${describeUser(id.uid)}): every user of this machine may ${rw(others, 0o004, 0o002)} it`,
      accept: "{ sharedWith: 'anyone' }",
      accepts: { sharedWith: 'anyone' },
    };
  }
  const group = mode & GROUP_RW;
  if ((mode & looked.group) === 0) return undefined;
  if (policy.sharedWith === 'nobody') {
    return {
      code: 'ERR_MMAP_UNSAFE_PERMISSIONS',
      why: `has mode ${octal(mode)} (owner ${describeUser(id.uid)}): the members of group ${describeGroup(id.gid)} may ${rw(group, 0o040, 0o020)} it`,
      accept: "{ sharedWith: 'group' }",
      accepts: { sharedWith: 'group' },
    };
  }
  if (!ownGroups().has(id.gid)) {
    return {
      code: 'ERR_MMAP_UNSAFE_PERMISSIONS',
      why: `has mode ${octal(mode)} (owner ${describeUser(id.uid)}): it is shared with group ${describeGroup(id.gid)}, which is not one of this process's groups`,
      accept: "{ sharedWith: 'anyone' }",
      accepts: { sharedWith: 'anyone' },
    };
  }
  return undefined;
}

/**
 * The error of a refusal: `subject` names the object (`Shared memory '/jobs'`, `File '/tmp/x'`),
 * `path` is what the error's `path` says, and `fix` turns the accepting option into the end of the
 * message (default: "to open it all the same, pass ..." / "pass ... to accept that").
 */
export function ownershipError(verdict: OwnershipVerdict, subject: string, path: string, id: ObjectIdentity, fix = defaultFix('open')): OwnershipError {
  const err = mmapkitError(verdict.code, `${subject} ${verdict.why}; ${fix(verdict)}.`);
  Object.assign(err, { path, uid: id.uid, gid: id.gid, mode: id.mode & 0o777 });
  return err as OwnershipError;
}

/** "to VERB it all the same, pass { owner: ... }" for an owner, "pass { sharedWith: ... } to accept that" for a mode. */
function defaultFix(verb: string): (v: OwnershipVerdict) => string {
  return (v) => (v.code === 'ERR_MMAP_NOT_OWNER' ? `to ${verb} it all the same, pass ${v.accept}` : `pass ${v.accept} to accept that`);
}

/**
 * Everything `policy` would need to accept an object of this identity, as option text
 * (`owner: 1001, sharedWith: 'anyone'`), or undefined if it accepts it already.
 */
export function optionsToAccept(id: ObjectIdentity, policy: OwnershipPolicy): string | undefined {
  const parts: string[] = [];
  let p = policy;
  // At most one owner and one sharedWith step (group, then anyone): bounded, whatever the mode.
  for (let v = ownershipVerdict(id, p); v !== undefined && parts.length < 3; v = ownershipVerdict(id, p)) {
    p = { ...p, ...v.accepts };
    if ('owner' in v.accepts) parts.push(`owner: ${v.accepts.owner}`);
    else parts.push(`sharedWith: '${v.accepts.sharedWith}'`);
  }
  // 'group' then 'anyone': only the last sharedWith counts.
  const owner = parts.filter((x) => x.startsWith('owner'));
  const shared = parts.filter((x) => x.startsWith('sharedWith')).slice(-1);
  return parts.length === 0 ? undefined : [...owner, ...shared].join(', ');
}

/**
 * The refusal of a file that `map()` with `size` opened (it did not create it), or undefined if
 * `policy` accepts it. `fix` turns the options that would accept it (`owner: 1001, sharedWith:
 * 'anyone'`) into the end of the message.
 */
export function fileRefusal(id: ObjectIdentity, policy: OwnershipPolicy, path: string, fix: (options: string) => string): OwnershipError | undefined {
  const verdict = ownershipVerdict(id, policy);
  if (verdict === undefined) return undefined;
  const options = optionsToAccept(id, policy) ?? verdict.accept;
  return ownershipError(verdict, `File '${path}'`, path, id, () => fix(options));
}

/**
 * Check the object open as `fd` (named `name`, for the message) against `policy`: `fstat` on the
 * descriptor, so the object checked is the one that will be mapped. Throws an {@link OwnershipError}.
 */
export function checkOwnership(fd: number, name: string, policy: OwnershipPolicy): void {
  if (policy.owner === 'any' && policy.sharedWith === 'anyone') return;
  const st = fstatSync(fd);
  const verdict = ownershipVerdict(st, policy);
  if (verdict !== undefined) throw ownershipError(verdict, `Shared memory '${name}'`, name, st);
}

/** A mode as an octal number with a leading 0, as `ls` users read it: `0666`. */
export function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

function rw(bits: number, read: number, write: number): string {
  return (bits & read) !== 0 && (bits & write) !== 0 ? 'read and write' : (bits & write) !== 0 ? 'write' : 'read';
}

/** `uid 1000 (alice)`, or `uid 1000` when no name is found in /etc/passwd. */
export function describeUser(uid: number): string {
  const name = lookup('/etc/passwd', uid);
  return name === undefined ? `uid ${uid}` : `uid ${uid} (${name})`;
}

/** `gid 100 (users)`, or `gid 100` when no name is found in /etc/group. */
export function describeGroup(gid: number): string {
  const name = lookup('/etc/group', gid);
  return name === undefined ? `gid ${gid}` : `gid ${gid} (${name})`;
}

/**
 * The name of an id in a passwd or group file (`name:x:id:...`). Only local accounts: users from
 * LDAP or other NSS sources are shown by number (Node has no getpwuid, and this is only for messages).
 */
function lookup(file: string, id: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length >= 3 && fields[2] === String(id) && fields[0] !== '') return fields[0];
  }
  return undefined;
}
