import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/**
 * Serves the local apt repository of scripts/fresh-os-fixture (a flat directory of .debs with its
 * Packages index) over HTTP on one address of the test's side of a veth: the fresh box reaches it
 * as `deb [trusted=yes] http://<address>:<port>/ ./`, so apt on a box with no route out installs
 * real Debian packages from a real repository. GET and HEAD of plain files in that one directory;
 * everything else is 404. Counts the .debs served (proof the box fetched from here).
 */
export interface AptMirrorServer {
  url: string;
  /** The sources.list line for the box. */
  sourcesLine: string;
  /** .deb file names served so far, in order. */
  served: string[];
  close(): Promise<void>;
}

export async function serveAptMirror(options: { dir: string; address: string }): Promise<AptMirrorServer> {
  const served: string[] = [];
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://mirror').pathname).replace(/^\/+/, '');
    const notFound = () => { res.writeHead(404).end(); };
    // One flat directory: a plain name, no dot files, nothing climbs out.
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !/^[A-Za-z0-9][A-Za-z0-9+%:~._-]*$/.test(name)) return notFound();
    const file = path.join(options.dir, name);
    stat(file).then((st) => {
      if (!st.isFile()) return notFound();
      res.writeHead(200, { 'content-length': st.size, 'content-type': 'application/octet-stream' });
      if (req.method === 'HEAD') return res.end();
      if (name.endsWith('.deb')) served.push(name);
      createReadStream(file).pipe(res);
    }, notFound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, options.address, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${options.address}:${port}/`;
  return {
    url,
    sourcesLine: `deb [trusted=yes] ${url} ./`,
    served,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
