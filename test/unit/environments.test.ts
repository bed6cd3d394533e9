import { describe, expect, it } from 'vitest';
import { parseDeployConfig } from '../../controller/config.js';
import { durationMs, resolveTarget } from '../../controller/environments.js';
import { checkOverridesFit, deploymentRequest, sameOverrides, targetFields, uploadHeaders, uploadPath } from '../../controller/commands/push.js';
import { slackBody, type NotifyEvent } from '../../agent/notify/events.js';
import { checkAppSpec, type AppSpec } from '../../contract/spec.js';
import {
  applySpecOverrides, checkSpecOverrides, decodeSpecOverrides, encodeSpecOverrides, mergeSpecOverrides, SPEC_OVERRIDES_HEADER,
} from '../../contract/spec-overrides.js';
import { deploymentInfoOf } from '../../contract/deployment-info.js';
import { SlipwayError } from '../../contract/errors.js';
import { releaseManifest, randomCommit } from '../helpers/release-content.js';

/** Runs `fn`, which must throw a SlipwayError of `code` (and a message matching `pattern`). */
function expectSlipwayError(fn: () => unknown, code: string, pattern?: RegExp): SlipwayError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SlipwayError);
    expect((error as SlipwayError).code).toBe(code);
    if (pattern) expect((error as SlipwayError).message).toMatch(pattern);
    return error as SlipwayError;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

const host = (address: string) => ({ address, user: 'deploy' });
const SOURCE = '/repo/deploy.config.json';

function config(extra: Record<string, unknown> = {}) {
  return parseDeployConfig({
    app: 'shop', agent: {},
    environments: {
      staging: { app: 'shop-staging', hosts: [host('staging.example.com')], spec: { serverNames: ['staging.shop.test'], processes: { web: { instances: 1 } } } },
      production: {
        hosts: [host('prod.example.com')], agent: { port: 7171 }, requireApproval: true,
        promotion: { from: 'staging' }, gitTag: 'deploy/production/{date}-{shortSha}',
      },
    },
    ...extra,
  }, SOURCE);
}

function spec(raw: unknown): AppSpec {
  const checked = checkAppSpec(raw);
  if (!checked.ok) throw new Error(JSON.stringify(checked.problems));
  return checked.spec;
}

const SPEC = spec({
  processes: { web: { script: 'server.js', instances: 2, env: { MODE: 'base' } }, worker: { command: ['node', 'worker.js'] } },
  routes: [{ serverNames: ['shop.test'], process: 'web' }, { serverNames: ['api.shop.test'], path: '/api/', process: 'web' }],
  watch: { windowMs: 30_000 },
});

describe('environments in deploy.config.json', () => {
  it('resolves each environment to a target: box app, host, agent, overrides, approval, promotion, git tag', () => {
    const staging = resolveTarget(config(), 'staging');
    expect(staging).toMatchObject({
      env: 'staging', project: 'shop', app: 'shop-staging', host: { address: 'staging.example.com', port: 22 }, agent: { port: 7070 },
      specOverrides: { serverNames: ['staging.shop.test'] }, requireApproval: false, promotion: null, gitTag: null,
    });
    const production = resolveTarget(config(), 'production');
    expect(production).toMatchObject({
      env: 'production', project: 'shop', app: 'shop', host: { address: 'prod.example.com' }, agent: { port: 7171, tokenFile: '/etc/slipway/agent.token' },
      specOverrides: null, requireApproval: true, promotion: { from: 'staging', maxAgeMs: 14 * 86_400_000 }, gitTag: 'deploy/production/{date}-{shortSha}',
    });
    expect(resolveTarget(config({ defaultEnv: 'staging' }), undefined).env).toBe('staging');
    expect(durationMs('36h')).toBe(36 * 3_600_000);
  });

  it('without environments everything is as before: env null, project = app', () => {
    const plain = parseDeployConfig({ app: 'shop', host: host('example.com'), agent: {} }, SOURCE);
    expect(resolveTarget(plain, undefined)).toMatchObject({ env: null, project: 'shop', app: 'shop', specOverrides: null });
    expectSlipwayError(() => resolveTarget(plain, 'staging'), 'env_required', /declares no environments/);
  });

  it('no --env and no defaultEnv, or an unknown one: env_required naming the choices', () => {
    expectSlipwayError(() => resolveTarget(config(), undefined), 'env_required', /staging, production/);
    expectSlipwayError(() => resolveTarget(config(), 'prod'), 'env_required', /no environment "prod".*staging, production/);
  });

  it('refuses what the schema cannot say: two hosts of one name, a missing host, a bad defaultEnv or promotion source, two envs on one box app', () => {
    const refused = (raw: Record<string, unknown>, pattern: RegExp) => {
      const error = expectSlipwayError(() => parseDeployConfig(raw, SOURCE), 'config_invalid');
      expect(error.details?.join('\n')).toMatch(pattern);
    };
    refused({ app: 'shop', environments: { production: { hosts: [host('a.example.com'), { ...host('b.example.com'), name: 'a.example.com' }] } } }, /hosts\/1\/name: "a.example.com" names another host too/);
    refused({ app: 'shop', environments: { production: {} } }, /environments\/production\/hosts: is required/);
    refused({ app: 'shop', defaultEnv: 'qa', host: host('a.example.com'), environments: { production: {} } }, /defaultEnv: names no environment/);
    refused({ app: 'shop', host: host('a.example.com'), environments: { production: { promotion: { from: 'staging' } } } }, /promotion\/from: names no environment/);
    refused({ app: 'shop', host: host('a.example.com'), environments: { staging: {}, production: {} } }, /same app \(shop\) to the same host/);
    refused({ app: 'shop', host: host('a.example.com'), environments: { staging: { spec: { processes: { web: { instances: 0 } } } } } }, /environments\/staging\/spec\/processes\/web\/instances/);
  });
});

describe('spec overrides', () => {
  it('merges server names, per-route names, instances, env, maxMemory, watch and smoke', () => {
    const merged = applySpecOverrides(SPEC, {
      serverNames: ['staging.test'], routes: { 1: { serverNames: ['api.staging.test'] } },
      processes: { web: { instances: 1, env: { MODE: 'web-own' }, maxMemory: '300M' } }, env: { MODE: 'staging', REGION: 'eu' },
      watch: { windowMs: 500 }, smoke: [{ path: '/health' }],
    });
    expect(merged.routes.map((r) => r.serverNames)).toEqual([['staging.test'], ['api.staging.test']]);
    expect(merged.processes.web).toMatchObject({ instances: 1, maxMemory: '300M', env: { MODE: 'web-own', REGION: 'eu' } });
    expect(merged.processes.worker!.env).toEqual({ MODE: 'staging', REGION: 'eu' });
    expect(merged.watch).toEqual({ windowMs: 500 });
    expect(merged.smoke).toEqual([{ path: '/health' }]);
    expect(SPEC.processes.web!.instances).toBe(2);
    const checked = mergeSpecOverrides(SPEC, { watch: { windowMs: 500 } });
    expect(checked.ok && checked.spec.watch).toMatchObject({ windowMs: 500, intervalMs: 1000, failuresToRollback: 3 });
  });

  it('problems name the override field they come from, or the spec field', () => {
    const result = mergeSpecOverrides(SPEC, { routes: { 5: { serverNames: ['x.test'] } }, processes: { worker: { instances: 2 }, api: { instances: 1 } }, env: { PORT: '1' } });
    expect(result.ok).toBe(false);
    const fields = !result.ok ? result.problems.map((p) => `${p.fromOverrides ? 'o' : 's'}:${p.field}`) : [];
    expect(fields).toEqual(expect.arrayContaining(['o:routes/5', 'o:processes/api', 'o:env/PORT']));
    const fit = () => checkOverridesFit({ env: 'staging', specOverrides: { processes: { api: { instances: 1 } } } }, { spec: SPEC, digest: 'x' }, 'abc');
    const error = expectSlipwayError(fit, 'spec_invalid', /environments\.staging\.spec/);
    expect(error.details).toEqual(['environments.staging.spec.processes.api: names no process (the spec has web, worker)']);
    expect(checkSpecOverrides({ processes: { web: { script: 'x.js' } } }).ok).toBe(false);
  });

  it('travels as a base64url header of at most 8 KB, checked on arrival', () => {
    const overrides = { serverNames: ['staging.test'], env: { A: 'b' } };
    const header = encodeSpecOverrides(overrides)!;
    expect(decodeSpecOverrides(header)).toEqual(overrides);
    expect(encodeSpecOverrides({})).toBeNull();
    expect(() => decodeSpecOverrides(Buffer.from(JSON.stringify({ nope: 1 })).toString('base64url'))).toThrow(/nope/);
    expect(() => decodeSpecOverrides('not base64!')).toThrow(/base64url/);
    expect(() => decodeSpecOverrides(Buffer.from(JSON.stringify({ env: { A: 'x'.repeat(4000), B: 'y'.repeat(4000), C: 'z'.repeat(1000) } })).toString('base64url'))).toThrow(/8192/);
  });
});

describe('what push sends for an environment', () => {
  it('uploads to the box app with the project in the query; the request carries env, overrides and tag', () => {
    const staging = resolveTarget(config(), 'staging');
    expect(uploadPath(staging, 'abc', 'v1')).toBe('/apps/shop-staging/releases/abc?project=shop&env=staging&tag=v1');
    expect(uploadPath({ app: 'shop', project: 'shop', env: null }, 'abc', 'v1')).toBe('/apps/shop/releases/abc');
    expect(uploadHeaders(staging.specOverrides)[SPEC_OVERRIDES_HEADER]).toBeTruthy();
    expect(uploadHeaders(null)).toEqual({});
    expect(deploymentRequest('r', 'l', undefined, targetFields(staging, 'v1'))).toEqual({
      releaseId: 'r', lockId: 'l', env: 'staging', specOverrides: staging.specOverrides, tag: 'v1',
    });
    expect(targetFields(resolveTarget(config(), 'production'), null)).toEqual({ env: 'production', specOverrides: {} });
    expect(targetFields({ env: null, specOverrides: null }, null)).toEqual({});
  });

  it('DEPLOYMENT_INFO names the environment and prefers the deployment tag', () => {
    const manifest = { ...releaseManifest('shop', randomCommit(), 'a'.repeat(64)), tag: 'v1' };
    expect(deploymentInfoOf(manifest, 'me@host', new Date(0), { env: 'staging', tag: 'v2' })).toMatchObject({ env: 'staging', tag: 'v2', app: 'shop' });
    expect(deploymentInfoOf(manifest, 'me@host', new Date(0))).toMatchObject({ env: null, tag: 'v1' });
  });

  it('a live release is pushed again when the overrides of its environment changed', () => {
    const staging = resolveTarget(config(), 'staging');
    expect(sameOverrides({ env: 'staging', specOverrides: structuredClone(staging.specOverrides) }, staging)).toBe(true);
    expect(sameOverrides({ env: 'staging', specOverrides: { serverNames: ['old.shop.test'] } }, staging)).toBe(false);
    expect(sameOverrides({ env: null, specOverrides: null }, staging)).toBe(false);
    expect(sameOverrides({}, { env: null, specOverrides: null })).toBe(true);
  });

  it('a notification names the environment', () => {
    const event: NotifyEvent = {
      event: 'rollout_succeeded', app: 'shop-staging', env: 'staging', host: 'box', at: '2026-12-02T00:00:00.000Z', deploymentId: 3, kind: 'deploy',
      releaseId: 'abc', sha: null, tag: 'v2', branch: null, actor: 'me@laptop', outcome: 'succeeded', reason: null, stepDurationsMs: {}, url: null,
    };
    expect(slackBody(event).text).toMatch(/shop-staging \[staging\] deploy abc \(v2\)/);
  });
});
