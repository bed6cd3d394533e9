import { createServer } from 'node:net';

const handedOut = new Set<number>();

/**
 * A port that was free a moment ago on 127.0.0.1 and that this process has not handed out before.
 * The kernel can offer the same port twice once the probe socket is closed, and two calls in one
 * test (an app's HTTP and HTTPS ports) must not get the same number. Another process can still
 * take it before the caller binds, so whoever starts a server on it should retry on a failed bind.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await probeFreePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port on 127.0.0.1 that this process has not handed out already (100 tries)');
}

function probeFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`unexpected listen address: ${String(address)}`));
        return;
      }
      server.close((error) => (error ? reject(error) : resolve(address.port)));
    });
  });
}
