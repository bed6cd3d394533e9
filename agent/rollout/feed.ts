import type { DeploymentResult, DeploymentStreamLine } from '../../contract/api.js';

type Listener = (line: DeploymentStreamLine) => void;

/**
 * The progress of one running deployment. Subscribers get the backlog first, so a client that
 * attaches after the rollout started misses nothing; the rollout never waits for a subscriber.
 */
export class DeploymentFeed {
  private readonly lines: DeploymentStreamLine[] = [];
  private readonly listeners = new Set<Listener>();
  private resolveDone!: (result: DeploymentResult) => void;
  readonly done: Promise<DeploymentResult> = new Promise((resolve) => { this.resolveDone = resolve; });

  constructor(readonly deploymentId: number) {}

  push(line: DeploymentStreamLine): void {
    this.lines.push(line);
    for (const listener of this.listeners) listener(line);
    if (line.type === 'result') {
      this.listeners.clear();
      this.resolveDone(line);
    }
  }

  subscribe(listener: Listener): () => void {
    for (const line of this.lines) listener(line);
    if (this.lines.at(-1)?.type !== 'result') this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
