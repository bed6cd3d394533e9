// What runs between the pre-deploy backup and the start of a new slot for a release with an app
// spec: its host build (once per release) and its release phase (once per rollout). The rollout
// calls `prepareRelease` from its preparation step; everything else about builds and the release
// phase lives in agent/build/ and release-phase.ts.
import { realpath } from 'node:fs/promises';
import type { AgentConfig } from '../config.js';
import type { StateStore } from '../state/store.js';
import { shortSha } from '../../contract/names.js';
import type { ReleaseManifest } from '../../contract/manifest.js';
import { carriedSpecOf } from '../spec/release-spec.js';
import { wantsHostBuild, type HostBuilder } from '../build/host-build.js';
import { checkNativePlatform, hostPlatform, manifestBuildPlatform, nativeAddonsIn } from '../build/platform.js';
import { DEFAULT_BUILD_POLICY } from '../build/policy.js';
import { DEFAULT_RELEASE_TIMEOUT_MS, runReleasePhase } from './release-phase.js';
import type { StepJournal } from './journal.js';

export interface ReleasePreparationDeps {
  config: AgentConfig;
  state: StateStore;
  builder: HostBuilder;
  releaseDir: (app: string, releaseId: string) => string;
}

/** The hook the rollout calls after its backup step, with the app's env already read. */
export type PrepareRelease = (j: StepJournal, appEnv: Record<string, string>) => Promise<void>;

export function releasePreparation(deps: ReleasePreparationDeps): { prepareRelease: PrepareRelease; admitRelease: (app: string, releaseId: string) => void } {
  const manifestOf = (app: string, releaseId: string): ReleaseManifest | undefined => deps.state.release(app, releaseId)?.manifest;

  /** Refuses, before anything starts, a release whose native addons this box cannot load. */
  const admitRelease = (app: string, releaseId: string): void => {
    const manifest = manifestOf(app, releaseId);
    if (!manifest) return;
    const builtHere = deps.builder.builtPlatform(app, releaseId);
    checkNativePlatform({
      app, releaseId, host: hostPlatform(), builtHere: builtHere !== null,
      built: builtHere ?? manifestBuildPlatform(manifest),
      addons: () => nativeAddonsIn(deps.releaseDir(app, releaseId)),
    });
  };

  const prepareRelease: PrepareRelease = async (j, appEnv) => {
    const d = j.deployment;
    const manifest = manifestOf(d.app, d.releaseId);
    const spec = manifest ? carriedSpecOf(manifest) : null;
    if (!spec) return;
    if (wantsHostBuild(spec)) {
      if (deps.builder.needsBuild(d.app, d.releaseId, spec)) {
        await j.step('build', () => deps.builder.build({
          app: d.app, releaseId: d.releaseId, spec, deploymentId: d.id,
          report: { output: (line) => j.emit('build', 'info', line, null), note: (message) => j.emit('build', 'info', message, null) },
        }), (r) => `built on the host in ${r.durationMs} ms: ${r.steps.length} step(s)${r.reused.length ? `; install reused in ${r.reused.join(', ')}` : ''}`);
      } else {
        j.emit('build', 'info', `${shortSha(d.releaseId)} was built on this host before: not building again`, null);
      }
    }
    // Once per rollout of a new release: a switch or rollback to a release that already ran goes without.
    if (spec.release.length > 0 && d.kind === 'deploy' && d.fleet?.runOnce === false) {
      j.emit('release', 'info', 'the fleet\'s primary host runs the release phase: not here', null);
    } else if (spec.release.length > 0 && d.kind === 'deploy') {
      const policy = deps.config.apps[d.app]?.build ?? DEFAULT_BUILD_POLICY;
      const cwd = await realpath(deps.releaseDir(d.app, d.releaseId));
      await j.step('release', () => runReleasePhase({
        app: d.app, releaseId: d.releaseId, commands: spec.release, cwd, appEnv,
        timeoutMs: policy.releaseTimeoutMs ?? DEFAULT_RELEASE_TIMEOUT_MS,
        output: (line) => j.emit('release', 'info', line, null),
        note: (message) => j.emit('release', 'info', message, null),
      }), (r) => `${r.commands} release command(s) succeeded`);
    }
  };

  return { prepareRelease, admitRelease };
}
