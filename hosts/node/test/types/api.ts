// Every public API of pidman-wasm, used as a TypeScript user would: the
// types test (types.test.js) compiles this with `tsc --noEmit --strict`
// against the package's .d.ts files. It is never run.
import {
  Claim, GuestError, PIDManager, Plugin, PluginTrap, grantFor,
  type Backend, type ClearReport, type GuestErrorKind, type Held, type KillOutcome, type PortDescription,
  type PreflightReport, type StaleServer, type TreeMember,
} from 'pidman-wasm';
import pidman, { type PidmanOptions } from 'pidman-wasm/vite';
import type { Plugin as VitePlugin, UserConfig } from 'vite';

/** Every kind is named: a kind that is a bare string fails the `never`. */
function explain(kind: GuestErrorKind): string {
  switch (kind) {
    case 'not-found': return 'gone';
    case 'permission-denied': return 'not ours';
    case 'denied': return 'refused';
    case 'invalid': return 'bad input';
    case 'changed': return 'another process now';
    case 'survived': return 'still runs';
    case 'untrusted': return 'not trusted';
    case 'unsupported': return 'unsupported';
    case 'io': return 'I/O';
    default: {
      const unknown: never = kind;
      return unknown;
    }
  }
}

export async function everything(root: string, port: number): Promise<void> {
  const pidFile: string = PIDManager.getPidFile(root);
  const bengal: boolean = await PIDManager.isBengalProcess(process.pid);
  const stale: number | null = await PIDManager.checkStalePid(pidFile);
  if (stale !== null) {
    const gone: boolean = await PIDManager.killStaleProcess(stale, 2.5);
    const plan: TreeMember[] = await PIDManager.planStop(stale);
    console.log(gone, plan.map((m) => [m.identity.pid, m.identity.startToken + 1n, m.parent, m.command]));
  }
  await PIDManager.writePidFile(pidFile);
  await PIDManager.writePidFile(pidFile, process.pid);
  const onPort: number | null = await PIDManager.getProcessOnPort(port);
  const described: PortDescription = await PIDManager.describePort(port, { pidFile });
  if (described.tag === 'held') console.log(described.val.lineage[0]?.role, described.val.orphanOf?.pid);
  if (described.tag === 'unknown') console.log(described.val.toFixed());
  const removed: boolean = await PIDManager.remove(pidFile);

  const report: PreflightReport = await PIDManager.preflight(pidFile, { port });
  const verdict: 'clear' | 'stale-server' | 'port-busy' = report.verdict;
  const server: StaleServer | undefined = report.server;
  if (server) {
    const cleared: ClearReport = await PIDManager.clearStale(pidFile, server, { port, timeoutSeconds: 1 });
    const outcome: KillOutcome = cleared.outcome;
    console.log(outcome, cleared.stopped.members.map((m) => m.outcome), cleared.port.tag);
  }

  const got: Claim | Held = await PIDManager.acquire(pidFile, { pid: process.pid });
  if (got.claimed) {
    const claim: Claim = got;
    const released: boolean = await claim.release();
    console.log(released, claim.pidFile, claim.pid);
  } else {
    const holder: number | null = got.holder;
    console.log(holder, got.pidFile);
  }
  {
    const again = await PIDManager.acquire(pidFile);
    if (again.claimed) {
      await using claim = again;
      console.log(claim.pid);
    }
  }

  try {
    await PIDManager.remove(pidFile);
  } catch (e) {
    if (e instanceof GuestError) console.log(explain(e.kind), e.payload.tag, e.payload.val ?? '');
    else if (e instanceof PluginTrap) console.log(e.message);
  }
  const made = new GuestError('not-found');
  console.log(made.kind, bengal, onPort, removed, verdict, grantFor(pidFile)[0]);

  const plugin: Plugin = await Plugin.load();
  plugin.budgetMs = 1000;
  plugin.logLevel = 'debug';
  plugin.logLevel = null;
  const backend: Backend | null = null;
  if (backend) console.log(await plugin.call(backend, root, 'getPidFile', root), plugin.log.join('\n'));
}

const options: PidmanOptions = { pidFile: '.dev.pid', stopStale: true, timeoutSeconds: 3 };
const plugin: VitePlugin = pidman(options);
export const config: UserConfig = { plugins: [plugin, pidman()] };
