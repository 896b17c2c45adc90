// pidman-wasm/vite: the Vite plugin.
import type { Plugin } from 'vite';

export interface PidmanOptions {
  /** The PID file [default: `<cacheDir>/dev-server.pid`]. */
  pidFile?: string;
  /** Stop a running dev server of this project instead of refusing to start. */
  stopStale?: boolean;
  /** Seconds a stopped server gets after SIGTERM [default: 5]. */
  timeoutSeconds?: number;
}

export default function pidman(options?: PidmanOptions): Plugin;
