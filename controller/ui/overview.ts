import type {
  AppStatus, DeploymentStreamLine, DeploymentSummary, DoraFigures, NotificationsStatus, ReleaseListEntry,
} from '../../contract/api.js';
import type { BackupsOverview } from '../../contract/backups.js';
import { SlipwayError, type ErrorBody } from '../../contract/errors.js';
import type { AgentClient } from '../agent-client.js';

/** What the page needs of the agent client: the same calls the CLI's commands make. */
export type UiAgent = Pick<AgentClient, 'get' | 'find' | 'stream'>;

/** One part of the page, loaded or refused on its own: an agent without backups still shows its slots. */
export type Section<T> = { ok: true; value: T } | { ok: false; error: ErrorBody };

/** GET /apps on the agent. */
export interface AppListEntry { app: string; liveSlot: string | null; generation: number }

/** Everything the page shows of one app, in one answer (the agent requests go out side by side over the one SSH link). */
export interface Overview {
  app: string;
  /** The app `deploy ui` was started for: the only one whose traffic the page may move. */
  target: string;
  env: string | null;
  at: string;
  apps: Section<AppListEntry[]>;
  status: Section<AppStatus>;
  deployments: Section<DeploymentSummary[]>;
  releases: Section<ReleaseListEntry[]>;
  dora: Section<DoraFigures>;
  backups: Section<BackupsOverview | null>;
  notifications: Section<NotificationsStatus | null>;
}

/** Pure: the error shape the page shows; nothing but a SlipwayError's own message leaves the server. */
export function errorBodyOf(error: unknown): ErrorBody {
  if (error instanceof SlipwayError) return error.toBody();
  return { error: 'internal_error', message: 'deploy ui hit an internal error', hint: 'see the terminal deploy ui runs in' };
}

async function section<T>(load: () => Promise<T>): Promise<Section<T>> {
  try {
    return { ok: true, value: await load() };
  } catch (error) {
    return { ok: false, error: errorBodyOf(error) };
  }
}

export interface OverviewQuery { app: string; target: string; env: string | null; since: string; limit: number }

/** Reads the app's status, history, releases, DORA figures, backups and notifications: the reads of status, history, releases, metrics and backup list. */
export async function loadOverview(agent: UiAgent, query: OverviewQuery, now = new Date()): Promise<Overview> {
  const app = encodeURIComponent(query.app);
  const [apps, status, deployments, releases, dora, backups, notifications] = await Promise.all([
    section(async () => (await agent.get<{ apps: AppListEntry[] }>('/apps')).apps),
    section(() => agent.get<AppStatus>(`/apps/${app}`)),
    section(async () => (await agent.get<{ deployments: DeploymentSummary[] }>(`/apps/${app}/deployments?limit=${query.limit}`)).deployments),
    section(async () => (await agent.get<{ releases: ReleaseListEntry[] }>(`/apps/${app}/releases`)).releases),
    section(() => agent.get<DoraFigures>(`/apps/${app}/dora?since=${encodeURIComponent(query.since)}`)),
    // Agents before backups and notifications have no such routes: null, not an error.
    section(() => agent.find<BackupsOverview>('/backups')),
    section(() => agent.find<NotificationsStatus>('/notifications')),
  ]);
  return { app: query.app, target: query.target, env: query.env, at: now.toISOString(), apps, status, deployments, releases, dora, backups, notifications };
}

/** A line of the action stream the page reads: the agent's progress and result, or why it ended without one. */
export type ActionLine = DeploymentStreamLine | { type: 'error'; error: ErrorBody };
