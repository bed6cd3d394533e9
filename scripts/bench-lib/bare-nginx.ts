// The switch baseline: a second private nginx in front of two copies of the sample app, flipped
// the bare way users do it today (overwrite an include naming one upstream, `nginx -s reload`).
// The include proxies exactly like Slipway's template (same upstream keepalive and proxy
// settings), minus the per-request switch flag, which is what Slipway adds.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { runCommand } from '../../lib/exec.js';
import type { Slot } from '../../contract/names.js';
import { startNginx, type NginxHandle } from '../../test/helpers/nginx.js';
import { freePort } from '../../test/helpers/ports.js';
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
    const render = (slot: Slot) => bareInclude(ports[slot], listenPort, BARE_RELEASES[slot], ++generation);
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

function bareInclude(upstreamPort: number, listenPort: number, release: string, generation: number): string {
  return `upstream bare_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 16;
    keepalive_timeout 4s;
}

server {
    listen 127.0.0.1:${listenPort};
    server_name _;

    location / {
        proxy_pass http://bare_upstream;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;
        proxy_connect_timeout 5s;
        proxy_read_timeout 60s;
        add_header X-Slipway-Release ${release} always;
        add_header X-Slipway-Generation ${generation} always;
    }
}
`;
}
