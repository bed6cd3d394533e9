import path from 'node:path';
import { openDatabase } from '../../agent/state/db.js';
import { StateStore } from '../../agent/state/store.js';

/** Reads the agent's state database the way an operator would, without the agent's help. */
export function readState(home: string, app: string) {
  const db = openDatabase(path.join(home, 'agent.db'));
  try {
    const state = new StateStore(db);
    return {
      app: state.app(app),
      slots: state.slots(app),
      deployments: state.deployments(app),
      releases: state.releases(app),
      lock: state.lock(app),
      events: (deploymentId: number) => readEvents(home, deploymentId),
    };
  } finally {
    db.close();
  }
}

function readEvents(home: string, deploymentId: number) {
  const db = openDatabase(path.join(home, 'agent.db'));
  try {
    return new StateStore(db).events(deploymentId);
  } finally {
    db.close();
  }
}

/**
 * The id of the one release on the box packed from commit `sha` (release ids also cover the
 * files, so tests that know only the commit look it up); throws if there is none or several.
 */
export function releaseOfCommit(home: string, app: string, sha: string): string {
  const matching = readState(home, app).releases.filter((r) => r.manifest.sha === sha);
  if (matching.length !== 1) throw new Error(`expected one release of commit ${sha} on the box, found ${matching.map((r) => r.releaseId).join(', ') || 'none'}`);
  return matching[0]!.releaseId;
}
