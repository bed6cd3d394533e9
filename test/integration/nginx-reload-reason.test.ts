import { promises as fs } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { squatPort } from '../helpers/port-squatter.js';
import { startStack, type Stack } from '../helpers/stack.js';

describe('an agent started from its config file quotes nginx when a reload is not applied (real sshd, nginx, PM2)', () => {
  let stack: Stack;

  beforeAll(async () => {
    // The refused reload is only known when proving it times out: 2.5 s instead of the default 5 s
    // (nginx logs the failed bind() at once and retries the port for 2.5 s; a reload that is
    // applied is proven in milliseconds, so the push after it has the margin it needs).
    stack = await startStack({ nginxConfig: { proveTimeoutMs: 2_500 } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('a public port another program holds: the push fails before the switch with nginx\'s reason and the port to free', async () => {
    const written = JSON.parse(await fs.readFile(stack.agentConfigPath, 'utf8')) as { nginx: Record<string, unknown> };
    expect(written.nginx.errorLogPath).toBe(stack.nginx.errorLogPath);

    const squatter = await squatPort({ port: stack.publicPort, nginxErrorLog: stack.nginx.errorLogPath });
    let result;
    try {
      result = await stack.deploy(['push']);
      // Traffic did not move: the other program still answers on the public port.
      expect((await stack.get('/')).body).toBe('no');
    } finally {
      await squatter.release();
    }
    expect(result.code, result.stdout + result.stderr).toBe(3);
    expect(result.stdout).toContain('live slot untouched');
    expect(result.stdout).toContain(`bind() to 127.0.0.1:${stack.publicPort} failed (98: Address already in use)`);
    expect(result.stdout).toContain(stack.nginx.errorLogPath);
    expect(result.stdout).toContain(`ss -ltnp 'sport = :${stack.publicPort}'`);
    // The include was a first one: it is gone again, so no later reload can put it live.
    expect(await fs.readdir(stack.nginx.includeDir)).toEqual([]);

    const again = await stack.deploy(['push']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect((await stack.get('/')).status).toBe(200);
  });
});
