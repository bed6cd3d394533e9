import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';
import { isAlive } from './nginx.js';
import { waitFor } from './wait.js';

/** A real Prometheus server (Debian's package) scraping one target every second, from a temp dir. */
export interface PrometheusServer {
  url: string;
  pid: number;
  /** An instant query; the result vector (empty when the series does not exist yet). */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  stop(): Promise<void>;
}

export async function startPrometheus(target: { host: string; port: number; credentialsFile: string }): Promise<PrometheusServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-prom-'));
  const port = await freePort();
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 900ms',
    'scrape_configs:',
    '  - job_name: slipway-agent',
    '    authorization:',
    `      credentials_file: ${target.credentialsFile}`,
    '    static_configs:',
    `      - targets: ['${target.host}:${target.port}']`,
    '',
  ].join('\n');
  await fs.writeFile(path.join(dir, 'prometheus.yml'), config);
  const log = await fs.open(path.join(dir, 'prometheus.log'), 'w');
  const child = spawn('prometheus', [
    `--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--storage.tsdb.retention.time=1h',
  ], { stdio: ['ignore', log.fd, log.fd], detached: true });
  await log.close();
  const pid = child.pid!;
  child.unref();
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (isAlive(pid)) process.kill(pid, 'SIGTERM');
    await waitFor(() => !isAlive(pid), { description: `prometheus ${pid} to exit`, timeoutMs: 15_000 }).catch(() => {
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    });
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => (await fetch(`${url}/-/ready`)).ok, { description: 'prometheus ready', timeoutMs: 30_000, intervalMs: 200 });
  } catch (error) {
    const text = await fs.readFile(path.join(dir, 'prometheus.log'), 'utf8').catch(() => '');
    await stop();
    throw new Error(`${(error as Error).message}\n${text.slice(-2000)}`);
  }
  return {
    url, pid, stop,
    async query(expr) {
      const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = await response.json() as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      if (body.status !== 'success') throw new Error(`prometheus query ${expr} failed: ${JSON.stringify(body)}`);
      return body.data.result;
    },
  };
}
