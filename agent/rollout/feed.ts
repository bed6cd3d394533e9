import type { DeploymentResult, DeploymentStreamLine } from '../../contract/api.js';

type Listener = (line: DeploymentStreamLine) => void;

/**
 * The progress of one running deployment. Subscribers get the backlog first, so a client that
 * attaches after the rollout started misses nothing; the rollout never waits for a subscriber.
 * The feed ends with its result line, or, when the agent could not record the end (its state
 * database failed, e.g. a full disk), by abandon(): every stream ends without a result, because
 * the outcome is unknown, and clients report it as such (agent_stream_cut).
 */
export class DeploymentFeed {
  private readonly lines: DeploymentStreamLine[] = [];
  private readonly listeners = new Set<Listener>();
  private readonly enders = new Set<() => void>();
  private ended = false;
  private resolveDone!: (result: DeploymentResult | null) => void;
  /** The result line, or null when the feed was abandoned. */
  readonly done: Promise<DeploymentResult | null> = new Promise((resolve) => { this.resolveDone = resolve; });

  constructor(readonly deploymentId: number) {}

  push(line: DeploymentStreamLine): void {
    if (this.ended) return;
    this.lines.push(line);
    for (const listener of this.listeners) listener(line);
    if (line.type === 'result') {
      this.ended = true;
      this.listeners.clear();
      this.enders.clear();
      this.resolveDone(line);
    }
  }

  /**
   * Ends every subscriber's stream without a result line (`done` resolves null): the rollout's
   * end could not be recorded. A later subscriber gets the backlog and is ended at once.
   */
  abandon(): void {
    if (this.ended) return;
    this.ended = true;
    this.listeners.clear();
    const enders = [...this.enders];
    this.enders.clear();
    for (const end of enders) end();
    this.resolveDone(null);
  }

  /** `onAbandon` ends the subscriber's stream when the feed is abandoned (see abandon()). */
  subscribe(listener: Listener, onAbandon?: () => void): () => void {
    for (const line of this.lines) listener(line);
    if (!this.ended) {
      this.listeners.add(listener);
      if (onAbandon) this.enders.add(onAbandon);
    } else if (this.lines.at(-1)?.type !== 'result') {
      onAbandon?.();
    }
    return () => {
      this.listeners.delete(listener);
      if (onAbandon) this.enders.delete(onAbandon);
    };
  }
}
