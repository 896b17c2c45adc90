// pidman-wasm: the public API.

/** An error the plugin answered with: a case of its WIT `error` variant. */
export class GuestError extends Error {
  /** `not-found`, `permission-denied`, `denied`, `invalid`, `changed`,
   *  `survived`, `untrusted`, `unsupported` or `io`. */
  readonly kind: string;
}

/** The plugin trapped, or ran past its memory or time budget. */
export class PluginTrap extends Error {}

/** A process pinned to one lifetime. */
export interface ProcessIdentity { pid: number; startToken: bigint }

/** A live server in the way of a new one. */
export interface StaleServer {
  identity: ProcessIdentity;
  command: string;
  holdsPort: boolean;
  fromPidFile: boolean;
  /** Claimed by a running pidman (a managed server, not a leftover). */
  claimed: boolean;
}

/** Who holds the port that was asked about. */
export type PortStatus =
  | { tag: 'unchecked' }
  | { tag: 'free' }
  | { tag: 'held-by-server' }
  | { tag: 'held-by-other'; val: { pid: number; command: string } }
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
  outcome: 'already-gone' | 'terminated' | 'killed';
  port: PortStatus;
}

/** A claimed PID file. */
export class Claim {
  readonly claimed: true;
  readonly pidFile: string;
  readonly pid: number;
  /** End the claim; whether the file was removed. */
  release(): Promise<boolean>;
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
  static killStaleProcess(pid: number, timeoutSeconds?: number): Promise<boolean>;
  static writePidFile(pidFile: string, pid?: number): Promise<void>;
  static getProcessOnPort(port: number): Promise<number | null>;
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
