// The switch baseline: a second private nginx in front of two copies of the sample app, flipped
// the bare way (overwrite the include, `nginx -s reload`), with the include rendered from the same
// template Slipway uses so both nginx instances proxy exactly alike.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { renderAppConfig } from '../../agent/nginx/render.js';
import { runCommand } from '../../agent/shared/exec.js';
import type { Slot } from '../../agent/shared/names.js';
import { startNginx, type NginxHandle } from '../../test/helpers/nginx.js';
import { freePort } from '../../test/helpers/ports.js';
import { REPO_ROOT } from '../../test/helpers/agent-process.js';
import { waitFor } from '../../test/helpers/wait.js';
import { SAMPLE_APP_DIR } from '../../test/helpers/stack.js';

export const BARE_RELEASES: Record<Slot, string> = { blue: 'b1'.repeat(20), green: 'e2'.repeat(20) };

export interface BareNginx {
  url: string;
  live: Slot;
  /** Writes the include for `slot` and reloads; resolves when `nginx -s reload` has returned. */
  flip(slot: Slot): Promise<{ writtenAt: number; reloadMs: number }>;
  stop(): Promise<void>;
}

export async function startBareNginx(): Promise<BareNginx> {
  const nginx: NginxHandle = await startNginx();
  const apps: ChildProcess[] = [];
  const stop = async () => {
    for (const app of apps) if (app.exitCode === null && app.signalCode === null) app.kill('SIGKILL');
    await Promise.all(apps.map((app) => (app.exitCode !== null || app.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => app.once('exit', () => resolve())))));
    await nginx.stop();
  };
  try {
    const ports: Record<Slot, number> = { blue: await freePort(), green: await freePort() };
    for (const slot of ['blue', 'green'] as const) {
      const child = spawn(process.execPath, [path.join(SAMPLE_APP_DIR, 'server.js')], {
        env: { PATH: process.env.PATH, PORT: String(ports[slot]), SLIPWAY_RELEASE: BARE_RELEASES[slot], SLIPWAY_SLOT: slot },
        stdio: 'ignore',
      });
      apps.push(child);
      await waitFor(async () => (await fetch(`http://127.0.0.1:${ports[slot]}/health`).catch(() => null))?.ok ?? false,
        { timeoutMs: 15_000, description: `bare upstream ${slot} on ${ports[slot]}` });
    }
    const listenPort = await freePort();
    const conf = path.join(nginx.includeDir, 'bare.conf');
    let generation = 0;
    const render = (slot: Slot) => renderAppConfig({
      app: 'bare', slot, upstreamPort: ports[slot], releaseId: BARE_RELEASES[slot], generation: ++generation,
      listen: { host: '127.0.0.1', port: listenPort }, serverNames: ['_'],
    }, { templateDir: path.join(REPO_ROOT, 'nginx') });
    const reload = async () => {
      const started = performance.now();
      const result = await runCommand([...nginx.command, '-s', 'reload'], { timeoutMs: 10_000 });
      if (result.exitCode !== 0) throw new Error(`bare nginx reload failed: ${result.stderr}`);
      return performance.now() - started;
    };
    await fs.writeFile(conf, render('blue'));
    await reload();
    const url = `http://127.0.0.1:${listenPort}/`;
    await waitFor(async () => {
      const body = await fetch(url).then((r) => (r.ok ? r.text() : ''), () => '');
      return body.includes(BARE_RELEASES.blue);
    }, { timeoutMs: 15_000, description: 'the bare nginx to serve blue' });
    const bare: BareNginx = {
      url,
      live: 'blue',
      async flip(slot) {
        const text = render(slot);
        const writtenAt = performance.timeOrigin + performance.now();
        await fs.writeFile(conf, text);
        const reloadMs = await reload();
        bare.live = slot;
        return { writtenAt, reloadMs };
      },
      stop,
    };
    return bare;
  } catch (error) {
    await stop();
    throw error;
  }
}
