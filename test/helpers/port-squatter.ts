import { stat, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

export interface PortSquatter {
  port: number;
  /**
   * Keeps the port until nginx has given up binding it (it retries for 2.5 s), so a config that
   * listens there cannot go live late, then frees it.
   */
  release(): Promise<void>;
}

/**
 * Another program holding a loopback port: `nginx -t` does not mind (it ignores "address in use"),
 * but a reload fails inside the master, which keeps its old config while "-s reload" exits 0.
 * It answers every connection with a 200 that carries none of Slipway's markers.
 */
export async function squatPort(options: { port?: number; nginxErrorLog: string }): Promise<PortSquatter> {
  const server: Server = createServer((socket) => {
    socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno', () => socket.destroy());
  });
  const port = options.port ?? await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const logOffset = await stat(options.nginxErrorLog).then((info) => info.size, () => 0);
  return {
    port,
    async release() {
      await waitFor(async () => (await readFile(options.nginxErrorLog)).subarray(logOffset).toString('utf8').includes('still could not bind()'), {
        timeoutMs: 10_000, description: `nginx to give up binding the taken port ${port}`,
      }).catch(() => undefined);
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
