// pidman-wasm: the public API.

/** The cases of the plugin's WIT `error` variant. */
export type GuestErrorKind =
  | 'not-found'
  | 'permission-denied'
  | 'denied'
  | 'invalid'
  | 'changed'
  | 'survived'
  | 'untrusted'
  | 'unsupported'
  | 'io';

/** An error the plugin answered with: a case of its WIT `error` variant. */
export class GuestError extends Error {
  constructor(kind: GuestErrorKind, message?: string);
  readonly kind: GuestErrorKind;
  /** The case as jco passes it to the plugin (a backend's answer). */
  readonly payload: { tag: GuestErrorKind; val?: string };
}

/** The plugin trapped, or ran past its memory or time budget. */
export class PluginTrap extends Error {}

/** A process pinned to one lifetime. */
export interface ProcessIdentity { pid: number; startToken: bigint }

/** One process of a server's tree: the server, or a descendant (or, once
 *  the server is gone, a member of the process group its claim recorded). */
export interface TreeMember {
  identity: ProcessIdentity;
  /** Its parent's PID, as the snapshot read it. */
  parent: number;
  command: string;
}

/** How a process of a stopped tree ended. */
export type KillOutcome = 'already-gone' | 'terminated' | 'killed';

/** One member of a stopped tree. */
export interface MemberStop {
  pid: number;
  command: string;
  outcome: KillOutcome;
}

/** A stopped tree: every process of it is gone. */
export interface StopReport {
  /** How the root (the server itself) ended. */
  outcome: KillOutcome;
  /** Every member, the root first, then parents before children. */
  members: MemberStop[];
}

/** What pidman makes of a process above (or at) a port's socket:
 *  `bengal` a Bengal serve process, `claimed` the server the PID file's
 *  claim names, `other` nothing pidman acts on by itself. */
export type Role = 'other' | 'bengal' | 'claimed';

/** One process of a port holder's ancestry. */
export interface LineageEntry {
  pid: number;
  command: string;
  role: Role;
}

/** The process holding a port, and the processes above it. */
export interface PortHolder {
  /** Whether it listens (else it holds another socket on the port). */
  listening: boolean;
  /** The holder first (`lineage[0]`), then its parents, nearest first, up
   *  to the topmost whose role is not `other` (else up to init, at most 8). */
  lineage: LineageEntry[];
  /** The claimed server, now gone, whose process group the holder belongs
   *  to (an orphan of `pidman run`'s server). */
  orphanOf?: ProcessIdentity;
}

/** Who holds a port (`describePort`). */
export type PortDescription =
  | { tag: 'free' }
  | { tag: 'held'; val: PortHolder }
  /** A process of this uid that cannot be seen. */
  | { tag: 'unknown'; val: number };

/** A live server in the way of a new one. */
export interface StaleServer {
  identity: ProcessIdentity;
  command: string;
  holdsPort: boolean;
  fromPidFile: boolean;
  /** Claimed by a running pidman (a managed server, not a leftover). */
  claimed: boolean;
  /** The process group its claim recorded, if any. */
  group?: number;
  /** The tree `clearStale` would stop as things stand: the server first
   *  (when it runs), then the rest, parents before children. */
  tree: TreeMember[];
}

/** Who holds the port that was asked about. */
export type PortStatus =
  | { tag: 'unchecked' }
  | { tag: 'free' }
  /** A process of the stale server's tree holds it. */
  | { tag: 'held-by-server'; val: PortHolder }
  /** Another program: never touched. */
  | { tag: 'held-by-other'; val: PortHolder }
  | { tag: 'held-by-unknown'; val: number };

/** The start check's answer. */
export interface PreflightReport {
  pidFile: string;
  server?: StaleServer;
  port: PortStatus;
  verdict: 'clear' | 'stale-server' | 'port-busy';
}

/** What `clearStale` did. */
export interface ClearReport {
  /** How the server itself ended (`stopped.outcome`). */
  outcome: KillOutcome;
  /** How the server and its tree ended. */
  stopped: StopReport;
  /** The port after it ended. */
  port: PortStatus;
}

/** A claimed PID file: its lock is held until `release()` (or the end of
 *  an `await using` block). Made by `PIDManager.acquire` only. */
export class Claim {
  private constructor();
  readonly claimed: true;
  readonly pidFile: string;
  readonly pid: number;
  /** End the claim; whether the file was removed. */
  release(): Promise<boolean>;
  /** `await using claim = ...`: `release()` at the end of the block. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** A PID file that a live server holds. */
export interface Held {
  readonly claimed: false;
  readonly pidFile: string;
  /** The holder; null while another pidman is in the middle of a claim. */
  readonly holder: number | null;
}

export class PIDManager {
  static getPidFile(projectRoot: string): string;
  static isBengalProcess(pid: number): Promise<boolean>;
  static checkStalePid(pidFile: string): Promise<number | null>;
  /** Stop `pid` and its whole tree: true once every member is gone. */
  static killStaleProcess(pid: number, timeoutSeconds?: number): Promise<boolean>;
  /** The tree `killStaleProcess` would stop, the root first; nothing is signalled. */
  static planStop(pid: number): Promise<TreeMember[]>;
  static writePidFile(pidFile: string, pid?: number): Promise<void>;
  static getProcessOnPort(port: number): Promise<number | null>;
  static describePort(port: number, options?: { pidFile?: string }): Promise<PortDescription>;
  static acquire(pidFile: string, options?: { pid?: number }): Promise<Claim | Held>;
  static remove(pidFile: string): Promise<boolean>;
  static preflight(pidFile: string, options?: { port?: number }): Promise<PreflightReport>;
  static clearStale(
    pidFile: string,
    server: StaleServer,
    options?: { port?: number; timeoutSeconds?: number },
  ): Promise<ClearReport>;
}

/** [directory the plugin may use, the PID file's path as it sees it]. */
export function grantFor(pidFile: string): [string, string];

/** The capabilities a backend gives the plugin (the WIT imports, in jco's
 *  shapes): `linux.js`'s LinuxBackend on the real OS, or a simulated one.
 *  Methods throw a GuestError for a WIT error. */
export interface Backend {
  ownPid(): number;
  parentPid(): number;
  ownUid(): number;
  state(pid: number): 'running' | 'zombie' | 'gone';
  inspect(pid: number): object;
  snapshot(): object[];
  send(pid: number, startToken: bigint, signal: 'term' | 'kill' | 'cont'): void;
  waitExit(pid: number, startToken: bigint, timeoutMs: number): boolean;
  clockMs(): bigint;
  sockets(port: number, listening: boolean): object[];
  socketOwner(handle: bigint): number | undefined;
  fileOwner(path: string): { uid: number; mode: number; symlink: boolean };
  tryLock(path: string, waitMs: number): unknown;
  release(held: unknown): void;
}

/** The plugin component itself, run on this thread with a backend of the
 *  caller's (PIDManager runs it in a worker, on the real OS): for tests and
 *  other backends. Calls take and give the WIT's values as jco lifts them. */
export class Plugin {
  /** The plugin jco transpiled into `gen` (by default this package's). */
  static load(options?: { gen?: string }): Promise<Plugin>;
  /** Each call's wall-clock budget in ms (plus the call's own timeout). */
  budgetMs: number;
  /** The least level of message the plugin sends (null: none); 'warn' by
   *  default. A message below it never leaves the plugin, which saves a
   *  call into JavaScript per message. */
  logLevel: 'debug' | 'info' | 'warn' | null;
  /** What the plugin logged, at `logLevel` or above, during the last call. */
  log: string[];
  /** Call the manager export `exportName` (camelCase) on `backend`, in the
   *  instance for `grantDir`, the one directory it may use. */
  call(backend: Backend, grantDir: string, exportName: string, ...args: unknown[]): Promise<unknown>;
}
