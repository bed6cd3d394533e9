/**
 * AgentClient.download (a promotion fetching the source host's kept tarball) against a real local
 * HTTP server standing in for the agent: a sender that stops mid-body without closing the
 * connection (an agent SIGSTOPped or stuck on its disk; sshd still answers keepalives) must end
 * the download with download_stalled after the stall limit, and the partial file must go.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../controller/agent-client.js';
import { exitCodeFor, EXIT } from '../../controller/errors.js';
import type { SlipwayError } from '../../contract/errors.js';

const BODY = Buffer.alloc(1024 * 1024, 7);
const BODY_SHA = createHash('sha256').update(BODY).digest('hex');

describe('AgentClient.download', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => { for (const c of cleanups.splice(0).reverse()) c(); });

  /** A server that announces the whole body and sends `sendBytes` of it, then nothing more (the connection stays open). */
  async function agentThatSends(sendBytes: number): Promise<() => Promise<Duplex>> {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': String(BODY.length) });
      if (sendBytes >= BODY.length) res.end(BODY);
      else res.write(BODY.subarray(0, sendBytes));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => { server.closeAllConnections(); server.close(); });
    const { port } = server.address() as net.AddressInfo;
    return () => new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
      socket.once('error', reject);
    });
  }

  function tempFile(): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-download-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return path.join(dir, 'release.tar.gz');
  }

  it('a sender that stops mid-body -> download_stalled naming the host, the bytes and the setting; the partial file is removed', async () => {
    const client = new AgentClient(await agentThatSends(250_000), 't'.repeat(43), 'tester', async () => null, {
      hostLabel: 'deploy@source:22', uploadStallTimeoutMs: 1_000,
    });
    const file = tempFile();
    const error = await client.download('/apps/shop/releases/x/artifact', file, BODY_SHA).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'download_stalled', kind: 'unreachable' });
    expect((error as SlipwayError).message).toMatch(/^download from deploy@source:22 stalled: the agent sent no bytes for 1 s \(250\.0 KB of 1\.0 MB received; limit: host\.uploadStallTimeoutMs/);
    expect((error as SlipwayError).hint).toMatch(/slipway-agent runs/);
    expect(exitCodeFor(error)).toBe(EXIT.unreachable);
    expect(existsSync(file), 'the partial file is removed').toBe(false);
  }, 10_000);

  it('a whole body is written and verified', async () => {
    const client = new AgentClient(await agentThatSends(BODY.length), 't'.repeat(43), 'tester', async () => null, { uploadStallTimeoutMs: 1_000 });
    const file = tempFile();
    expect(await client.download('/apps/shop/releases/x/artifact', file, BODY_SHA)).toEqual({ bytes: BODY.length, sha256: BODY_SHA });
    expect(readFileSync(file).equals(BODY)).toBe(true);
  }, 10_000);
});
