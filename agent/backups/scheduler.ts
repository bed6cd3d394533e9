import type { Logger } from 'pino';
import { CronJob } from '../cron.js';
import type { BackupService } from './service.js';

/**
 * Fires each job on its cron schedule. A tick never waits for the previous run: the service
 * records an overlapping tick as `skipped` (a scheduler-side noOverlap would drop it silently).
 */
export class BackupScheduler {
  private readonly tasks = new Map<string, CronJob>();

  constructor(private readonly service: BackupService, private readonly logger: Logger) {}

  start(): void {
    for (const name of this.service.jobNames()) {
      const job = this.service.job(name);
      this.tasks.set(name, CronJob.start(job.schedule, () => this.fire(name), {
        onError: (error) => this.logger.error({ job: name, err: error }, 'scheduled backup could not start'),
      }));
    }
    if (this.tasks.size) this.logger.info({ jobs: [...this.tasks.keys()] }, 'backup schedules started');
  }

  nextRun(job: string): Date | null {
    return this.tasks.get(job)?.nextRun() ?? null;
  }

  async stop(): Promise<void> {
    for (const task of this.tasks.values()) task.stop();
    this.tasks.clear();
  }

  private fire(name: string): void {
    this.service.run(name, { trigger: 'schedule', actor: 'schedule' }).catch((error: unknown) => {
      this.logger.error({ job: name, err: error }, 'scheduled backup could not start');
    });
  }
}
