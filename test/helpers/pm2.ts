import { existsSync, readFileSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive } from './nginx.js';
import { waitFor } from './wait.js';

/** A sample HTTP app to run under PM2: GET / → {label, pid, cwd, script}, GET /env → {env}. Needs PORT. */
export const PM2_PROBE_APP = fileURLToPath(new URL('../fixtures/pm2-probe-app/server.cjs', import.meta.url));

export interface Pm2Home {
  pm2Home: string;
  /** The daemon's pid from pm2.pid, or null before a daemon was started here. */
  daemonPid(): number | null;
  /** Pids of the apps PM2 recorded in pids/*.pid. */
  appPids(): number[];
  /** Kills the daemon and its apps by pid (never by name) and removes the directory. */
  cleanup(): Promise<void>;
}

function readPid(file: string): number | null {
  try {
    const text = readFileSync(file, 'utf8').trim();
    return /^[0-9]+$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

/** PM2 gives its daemon and every app PM2_HOME: a reused pid never matches, so nothing else is killed. */
function belongsTo(pid: number, pm2Home: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`PM2_HOME=${pm2Home}`);
  } catch {
    return false;
  }
}

/** An empty, private PM2_HOME; connect a Pm2Adapter to it to start a daemon there. */
export async function createPm2Home(): Promise<Pm2Home> {
  // Short path: PM2's unix sockets live here and socket paths are limited to 107 bytes.
  const pm2Home = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-pm2-'));
  const daemonPid = () => readPid(path.join(pm2Home, 'pm2.pid'));
  const appPids = () => {
    const dir = path.join(pm2Home, 'pids');
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((name) => name.endsWith('.pid'))
      .map((name) => readPid(path.join(dir, name)))
      .filter((pid): pid is number => pid !== null);
  };
  return {
    pm2Home,
    daemonPid,
    appPids,
    async cleanup() {
      // The daemon first, so it cannot restart an app we are about to kill.
      const daemon = daemonPid();
      const killed: number[] = [];
      const kill = (pid: number) => {
        if (!isAlive(pid) || !belongsTo(pid, pm2Home)) return;
        try {
          process.kill(pid, 'SIGKILL');
          killed.push(pid);
        } catch {
          // already gone
        }
      };
      if (daemon !== null) kill(daemon);
      // Read after the daemon died: an app it restarted a moment earlier has a newer pid file.
      for (const pid of appPids()) kill(pid);
      await waitFor(() => killed.every((pid) => !isAlive(pid)), { timeoutMs: 5_000, description: `PM2 pids ${killed.join(', ')} to exit` });
      await fs.rm(pm2Home, { recursive: true, force: true });
    },
  };
}

/** Copies the probe app into `dir` (created), as a release directory would hold it; returns the script path. */
export async function writeProbeRelease(dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const script = path.join(dir, 'server.cjs');
  await fs.copyFile(PM2_PROBE_APP, script);
  return script;
}
