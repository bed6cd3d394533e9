import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import nunjucks from 'nunjucks';
import { SlipwayError, errorMessage } from '../../contract/errors.js';
import { NO_RELEASE, isAppName, type Slot } from '../../contract/names.js';
import { inputRefusal, type AppConfigInput } from './render-input.js';
import { connectionVariable, routeTable } from './route-table.js';
import { PROBE_SECRET_VARIABLE } from './probe-secret.js';

export { nginxInputProblems, type AppConfigInput, type RouteInput, type SlotInput, type TlsInput } from './render-input.js';

export interface RenderOptions {
  templateDir: string;
  template?: string;
}

export const DEFAULT_TEMPLATE = 'app.conf.njk';
export const TEMPLATE_NAME_PATTERN = '^[A-Za-z0-9_.-]+\\.njk$';

function formatListen(host: string, port: number): string {
  if (host.includes(':') && !host.startsWith('[')) return `[${host}]:${port}`;
  return `${host}:${port}`;
}

const environments = new Map<string, { signature: string; env: nunjucks.Environment }>();

/** name:mtime:size of every file in the template dir: any edit (an included file too) changes it. */
function templateDirSignature(templateDir: string): string {
  try {
    return readdirSync(templateDir).sort().map((name) => {
      const st = statSync(path.join(templateDir, name));
      return `${name}:${st.mtimeMs}:${st.size}`;
    }).join('|');
  } catch {
    return 'unreadable';
  }
}

/**
 * One nunjucks environment per template dir, kept while no file in it changes: compiling the
 * template on every render cost 2–10 ms of each switch, and a swap-back is latency-critical.
 */
function environmentFor(templateDir: string): nunjucks.Environment {
  const signature = templateDirSignature(templateDir);
  const cached = environments.get(templateDir);
  if (cached && cached.signature === signature) return cached.env;
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(templateDir, { noCache: false, watch: false }), {
    autoescape: false,
    throwOnUndefined: true,
    trimBlocks: true,
    lstripBlocks: true,
  });
  environments.set(templateDir, { signature, env });
  return env;
}

/**
 * Renders an app's nginx include (a file included from nginx's http{} block). Pure apart from
 * reading the template: every value is validated first, so nothing from the outside can inject a
 * directive, and the template may only use variables this function provides.
 */
export function renderAppConfig(input: AppConfigInput, { templateDir, template = DEFAULT_TEMPLATE }: RenderOptions): string {
  const refusal = inputRefusal(input);
  if (refusal) {
    throw new SlipwayError('invalid_nginx_value',
      `refusing to render nginx config${isAppName(input?.app) ? ` for app ${input.app}` : ''}: invalid ${refusal.fields.join(', ')}`,
      {
        status: 400,
        details: refusal.details,
        hint: 'fix the listed values in the release\'s routes (deploy.spec.json), the agent config (apps/<app>) or the request; they are written into nginx config verbatim, so only plain names, paths, addresses and numbers are accepted',
      });
  }
  if (!new RegExp(TEMPLATE_NAME_PATTERN).test(template)) {
    throw new SlipwayError('nginx_template_error', `nginx template name ${JSON.stringify(template)} is not allowed`, {
      status: 500,
      hint: `use a file name matching ${TEMPLATE_NAME_PATTERN} inside ${templateDir}`,
    });
  }

  const templatePath = path.join(templateDir, template);
  const env = environmentFor(templateDir);
  const table = routeTable(input);
  const releaseOf = (slot: Slot) => input.slots[slot].releaseId ?? NO_RELEASE;
  const context = {
    app: input.app,
    slot: input.slot,
    slots: { blue: { releaseId: releaseOf('blue') }, green: { releaseId: releaseOf('green') } },
    switchDir: input.switchDir,
    // The render-time slot's release: served only if nginx cannot see the switch flags.
    releaseId: releaseOf(input.slot),
    generation: input.generation,
    listenHost: input.listenHost,
    upstreams: table.upstreams,
    servers: table.servers.map((server) => ({ ...server, listen: formatListen(input.listenHost, server.listenPort) })),
    websocket: table.websocket,
    connectionVariable: connectionVariable(input.app),
    tls: input.tls ? {
      ...input.tls,
      listen: formatListen(input.listenHost, input.tls.httpsPort),
      // The redirect's target names the HTTPS port unless it is the default one.
      portSuffix: input.tls.httpsPort === 443 ? '' : `:${input.tls.httpsPort}`,
    } : null,
    probeSecretFile: input.probeSecretFile ?? null,
    probeSecretVariable: PROBE_SECRET_VARIABLE,
  };
  try {
    return env.render(template, context);
  } catch (error) {
    const message = errorMessage(error).replace(/\s+/g, ' ').trim();
    const missing = /template not found/i.test(message);
    throw new SlipwayError('nginx_template_error', `nginx template ${templatePath} failed to render: ${message}`, {
      status: 500,
      cause: error,
      hint: missing
        ? `create ${templatePath} or point nginx.templateDir / apps/<app>/nginxTemplate at an existing template`
        : `the template may only use these variables: ${Object.keys(context).join(', ')}`,
    });
  }
}
