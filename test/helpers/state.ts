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
