import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { BackupService } from './service.js';

/**
 * Fires each job on its cron schedule. A tick never waits for the previous run: the service
 * records an overlapping tick as `skipped` (node-cron's own noOverlap would drop it silently).
 */
export class BackupScheduler {
  private readonly tasks = new Map<string, ScheduledTask>();

  constructor(private readonly service: BackupService, private readonly logger: Logger) {}

  start(): void {
    const cronLogger = {
      info: (message: string) => this.logger.debug({ source: 'node-cron' }, message),
      warn: (message: string) => this.logger.warn({ source: 'node-cron' }, message),
      error: (message: string | Error) => this.logger.error({ source: 'node-cron' }, String(message)),
      debug: (message: string | Error) => this.logger.debug({ source: 'node-cron' }, String(message)),
    };
    for (const name of this.service.jobNames()) {
      const job = this.service.job(name);
      const task = cron.schedule(job.schedule, () => this.fire(name), { name: `backup:${name}`, logger: cronLogger });
      this.tasks.set(name, task);
    }
    if (this.tasks.size) this.logger.info({ jobs: [...this.tasks.keys()] }, 'backup schedules started');
  }

  nextRun(job: string): Date | null {
    return this.tasks.get(job)?.getNextRun() ?? null;
  }

  async stop(): Promise<void> {
    for (const task of this.tasks.values()) await task.destroy();
    this.tasks.clear();
  }

  private fire(name: string): void {
    this.service.run(name, { trigger: 'schedule', actor: 'schedule' }).catch((error: unknown) => {
      this.logger.error({ job: name, err: error }, 'scheduled backup could not start');
    });
  }
}
