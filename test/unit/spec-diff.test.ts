import { describe, expect, it } from 'vitest';
import { checkAppSpec, type AppSpec } from '../../contract/spec.js';
import { specDiff } from '../../contract/spec-diff.js';

function spec(raw: unknown): AppSpec {
  const checked = checkAppSpec(raw);
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.spec;
}

const base = {
  processes: { web: { script: 'server.js' }, api: { command: ['python3', '-m', 'uvicorn', 'main:app', '--port', '$PORT'] } },
  routes: [{ serverNames: ['shop.test'], process: 'web' }, { serverNames: ['api.shop.test'], process: 'api' }],
};

describe('specDiff', () => {
  it('equal specs: no lines', () => {
    expect(specDiff(spec(base), spec(structuredClone(base)))).toEqual([]);
  });

  it('a process added, one removed, a route moved: one line each, by field path', () => {
    const next = structuredClone(base) as Record<string, any>;
    delete next.processes.api;
    next.processes.worker = { command: ['node', 'worker.js'] };
    next.routes = [{ serverNames: ['shop.test'], process: 'web', path: '/api' }];
    expect(specDiff(spec(base), spec(next))).toEqual([
      '- processes/api',
      '+ processes/worker',
      '~ routes/0/path: "/" → "/api"',
      '- routes/1',
    ]);
  });

  it('lists of plain values (argv, server names) change as one value; added plain fields show their value', () => {
    const next = structuredClone(base) as Record<string, any>;
    next.processes.api.command = ['python3', '-m', 'uvicorn', 'main:app', '--port', '$PORT', '--workers', '2'];
    next.routes[0].serverNames = ['shop.test', 'www.shop.test'];
    next.routes[0].clientMaxBodySize = '10m';
    next.processes.web.instances = 2;
    expect(specDiff(spec(base), spec(next))).toEqual([
      '~ processes/api/command: ["python3","-m","uvicorn","main:app","--port","$PORT"] → ["python3","-m","uvicorn","main:app","--port","$PORT","--workers","2"]',
      '~ processes/web/instances: 1 → 2',
      '+ routes/0/clientMaxBodySize: "10m"',
      '~ routes/0/serverNames: ["shop.test"] → ["shop.test","www.shop.test"]',
    ]);
  });

  it('a release without a spec (legacy config) compares as an empty spec', () => {
    const lines = specDiff(null, spec({ processes: { web: { script: 'server.js' } } }));
    expect(lines).toContain('+ processes');
    expect(lines).toContain('+ release: []');
    expect(specDiff(spec(base), null)).toContain('- routes');
    expect(specDiff(null, null)).toEqual([]);
  });

  it('cuts long values', () => {
    const a = spec({ processes: { web: { script: 'server.js', env: { BIG: 'x'.repeat(500) } } } });
    const b = spec({ processes: { web: { script: 'server.js', env: { BIG: 'y'.repeat(500) } } } });
    const [line] = specDiff(a, b);
    expect(line!.length).toBeLessThan(300);
    expect(line).toMatch(/^~ processes\/web\/env\/BIG: "x+… → "y+…$/);
  });
});
