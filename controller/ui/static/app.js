// The page of `deploy ui`: plain DOM, no framework, no build step. It talks only to the local
// server that served it (/api/...), which holds the agent token; data is put in the page with
// textContent only, never parsed as HTML.

const REFRESH_MS = 10_000;
const state = { session: null, app: null, overview: null, busy: false, since: '30d' };

class ApiError extends Error {
  constructor(body, status) {
    super(body.message);
    this.body = body;
    this.status = status;
  }
}

/** Creates an element; string and number children become text, null/false ones are skipped. */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
  }
  return node;
}

const $ = (id) => document.getElementById(id);

async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: { accept: 'application/json', ...init.headers } });
  } catch {
    throw new ApiError({
      error: 'ui_unreachable', message: 'cannot reach the server of this page: deploy ui has stopped (Ctrl-C, or its SSH link dropped)',
      hint: 'run deploy ui again and open the URL it prints',
    }, 0);
  }
  if (!response.ok) {
    let body;
    try { body = await response.json(); } catch { body = { error: 'http_' + response.status, message: `the page's server answered HTTP ${response.status}` }; }
    throw new ApiError(body, response.status);
  }
  return response;
}

function errorText(body) {
  return `${body.message}${body.hint ? ` (${body.hint})` : ''}`;
}

function showProblem(error) {
  const box = $('problem');
  box.replaceChildren();
  if (!error) { box.hidden = true; return; }
  const body = error instanceof ApiError ? error.body : { message: String(error.message ?? error) };
  box.append(h('p', { text: errorText(body) }), ...(body.details ?? []).map((d) => h('p', { class: 'small', text: d })));
  box.hidden = false;
}

function shortId(id) {
  return id ? id.slice(0, 25) : '-';
}

function ago(iso) {
  if (!iso) return '-';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function ms(value) {
  if (value === null || value === undefined) return '-';
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`;
}

function bytes(n) {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KB', 'MB', 'GB'];
  let v = n; let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function time(iso) {
  return h('time', { datetime: iso, title: iso, text: ago(iso) });
}

function sectionError(section) {
  return h('p', { class: 'bad', text: `could not load: ${errorText(section.error)}` });
}

function renderApps(overview) {
  const list = $('apps');
  list.replaceChildren();
  if (!overview.apps.ok) { list.append(h('li', {}, sectionError(overview.apps))); return; }
  for (const entry of overview.apps.value) {
    const current = entry.app === overview.app;
    list.append(h('li', {}, h('a', { href: `/?app=${encodeURIComponent(entry.app)}`, 'aria-current': current ? 'page' : null },
      `${entry.app}${entry.liveSlot ? ` (${entry.liveSlot})` : ''}`)));
  }
}

function health(check) {
  if (!check) return h('span', { text: '-' });
  return check.ok ? h('span', { class: 'ok', text: `healthy (${ms(check.ms)})` }) : h('span', { class: 'unhealthy', text: `unhealthy: ${check.status ?? check.error ?? '?'}` });
}

function renderLive(overview) {
  const s = overview.status;
  const actionsAllowed = overview.app === overview.target;
  $('title-app').textContent = `· ${overview.app}${overview.env && actionsAllowed ? ` (${overview.env})` : ''}`;
  document.title = `Slipway · ${overview.app}`;
  if (!s.ok) {
    for (const id of ['live-slot', 'live-release', 'public-url', 'pm2']) $(id).textContent = '-';
    $('live-slot').replaceChildren(sectionError(s));
    $('switch-open').disabled = true;
    $('rollback-open').disabled = true;
    return;
  }
  const status = s.value;
  $('live-slot').textContent = status.liveSlot ?? 'none';
  $('live-release').replaceChildren(h('code', { text: status.liveReleaseId ?? 'none' }));
  $('public-url').textContent = status.publicUrl;
  const pm2 = status.pm2;
  $('pm2').replaceChildren(pm2 ? h('span', { class: pm2.state, text: `${pm2.state}${pm2.pid ? ` (pid ${pm2.pid})` : ''}${pm2.message ? `: ${pm2.message}` : ''}` }) : h('span', { text: '-' }));

  const other = status.slots.find((slot) => !slot.live && slot.releaseId);
  const switchButton = $('switch-open');
  switchButton.textContent = other ? `Switch to ${other.slot}…` : 'Switch…';
  switchButton.disabled = state.busy || !actionsAllowed || !other;
  $('rollback-open').disabled = state.busy || !actionsAllowed || !status.liveSlot;
  $('actions-note').textContent = actionsAllowed ? (other ? '' : 'no release waits in the other slot to switch to')
    : `actions move traffic of ${overview.target} only (the app deploy ui was started for)`;
}

function renderSlots(overview) {
  const body = $('slots').tBodies[0];
  body.replaceChildren();
  if (!overview.status.ok) { body.append(h('tr', {}, h('td', { colspan: 5 }, sectionError(overview.status)))); return; }
  for (const slot of overview.status.value.slots) {
    const processes = slot.processes ?? (slot.process ? [{ name: 'web', status: slot.process.status, online: slot.process.status === 'online' ? 1 : 0, instances: 1, restarts: slot.process.restarts, port: slot.port, health: slot.health }] : []);
    body.append(h('tr', { 'data-slot': slot.slot },
      h('th', { scope: 'row' }, slot.slot, slot.live ? h('span', { class: 'live', text: ' (live)' }) : null),
      h('td', {}, h('code', { text: slot.releaseId ?? '-' })),
      h('td', { class: `slot-${slot.state}`, text: slot.state }),
      h('td', {}, processes.length ? h('ul', {}, processes.map((p) => h('li', {},
        `${p.name}${p.port ? ` :${p.port}` : ''} `, h('span', { class: p.status ?? 'down', text: p.status ?? 'not in PM2' }),
        ` ${p.online}/${p.instances} online, ${p.restarts} restarts`))) : '-'),
      h('td', {}, health(slot.health))));
  }
}

function renderHistory(overview) {
  const body = $('history').tBodies[0];
  body.replaceChildren();
  const section = overview.deployments;
  if (!section.ok) { body.append(h('tr', {}, h('td', { colspan: 9 }, sectionError(section)))); return; }
  if (!section.value.length) { body.append(h('tr', {}, h('td', { colspan: 9, text: 'no deployments yet' }))); return; }
  for (const d of section.value) {
    const steps = Object.entries(d.stepDurationsMs ?? {});
    const notes = [
      d.note ? `reason: ${d.note}` : null,
      d.reason ? `${d.outcome === 'succeeded' ? '' : 'why: '}${d.reason}` : null,
      d.kind === 'rollback' && d.previousRelease ? `from ${shortId(d.previousRelease)}${d.marksPrevious ? ' (marked rolled back)' : ''}` : null,
      d.forced ? 'forced over a bad mark' : null,
    ].filter(Boolean);
    body.append(h('tr', { 'data-deployment': d.id },
      h('td', { text: `#${d.id}` }),
      h('td', { text: d.kind }),
      h('td', {}, h('code', { text: shortId(d.releaseId) })),
      h('td', { text: d.slot }),
      h('td', { class: d.outcome ?? 'running', text: d.outcome ?? `running (${d.state})` }),
      h('td', { class: 'small', text: d.requestedBy }),
      h('td', {}, time(d.startedAt)),
      h('td', {}, h('details', {}, h('summary', {}, steps.length ? `${steps.length} steps, ${ms(steps.reduce((sum, [, v]) => sum + v, 0))}` : 'details'),
        h('ul', {}, steps.map(([step, v]) => h('li', { text: `${step} ${ms(v)}` }))),
        eventsButton(overview.app, d.id))),
      h('td', {}, notes.map((n) => h('div', { text: n })))));
  }
}

/** Every event a deployment recorded (as deploy history --show prints them), loaded when asked for. */
function eventsButton(app, id) {
  const list = h('ol', { class: 'events small', hidden: true });
  const button = h('button', { type: 'button', class: 'events-button', text: 'Show events' });
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const detail = await (await api(`/api/apps/${encodeURIComponent(app)}/deployments/${id}`)).json();
      list.replaceChildren(...detail.events.map((e) => h('li', {
        text: `${e.at.slice(11, 19)} ${{ ok: '✓', failed: '✗', started: '…' }[e.status] ?? '·'} ${e.step}${e.elapsedMs === null ? '' : ` ${ms(e.elapsedMs)}`}${e.message ? `  ${e.message}` : ''}`,
      })));
      list.hidden = false;
      button.remove();
    } catch (error) {
      button.disabled = false;
      showProblem(error);
    }
  });
  return [button, list];
}

function renderReleases(overview) {
  const body = $('releases').tBodies[0];
  body.replaceChildren();
  const section = overview.releases;
  if (!section.ok) { body.append(h('tr', {}, h('td', { colspan: 7 }, sectionError(section)))); return; }
  if (!section.value.length) { body.append(h('tr', {}, h('td', { colspan: 7, text: 'no releases on the host' }))); return; }
  for (const r of section.value) {
    const notes = [
      r.recordedState === 'bad' && r.state !== 'bad' ? 'marked bad' : null,
      r.rolledBack ? `rolled back by ${r.rolledBack.by} ${ago(r.rolledBack.at)}${r.rolledBack.reason ? `: ${r.rolledBack.reason}` : ''}` : null,
      r.dirty ? 'dirty tree' : null,
    ].filter(Boolean);
    body.append(h('tr', { 'data-release': r.releaseId },
      h('td', {}, h('code', { text: r.releaseId })),
      h('td', { class: r.state, text: r.state }),
      h('td', {}, time(r.createdAt)),
      h('td', { text: r.branch ?? '-' }),
      h('td', { text: r.author }),
      h('td', { text: r.slots.join(', ') || '-' }),
      h('td', {}, notes.map((n) => h('div', { text: n })))));
  }
}

function renderBackups(overview) {
  const box = $('backups');
  box.replaceChildren();
  const section = overview.backups;
  if (!section.ok) { box.append(sectionError(section)); return; }
  const jobs = (section.value?.jobs ?? []).filter((job) => job.app === overview.app);
  if (!jobs.length) { box.append(h('p', { text: `no backup jobs for ${overview.app} on this host (backups.jobs in the agent config)` })); return; }
  const runs = (section.value.runs ?? []).filter((run) => run.app === overview.app);
  box.append(h('table', { id: 'backup-jobs' },
    h('thead', {}, h('tr', {}, ['Job', 'Last run', 'Last verified', 'Kept', 'Offsite'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, jobs.map((job) => h('tr', { 'data-job': job.job },
      h('th', { scope: 'row' }, job.job, h('div', { class: 'small', text: `${job.kind}, "${job.schedule}"${job.running ? `, running #${job.running.id}` : ''}` })),
      h('td', {}, job.lastRun ? [h('span', { class: job.lastRun.status, text: `#${job.lastRun.id} ${job.lastRun.status}` }), ' ', time(job.lastRun.startedAt),
        job.lastRun.reason && job.lastRun.status !== 'verified' ? h('div', { class: 'small', text: job.lastRun.reason }) : null] : 'never'),
      h('td', {}, job.lastVerified ? [h('span', { class: 'verified', text: `#${job.lastVerified.id}` }), ` ${ago(job.lastVerified.at)}, ${bytes(job.lastVerified.bytes)}, checked by ${job.lastVerified.level ?? '-'}`]
        : h('span', { class: 'bad', text: 'no verified backup' })),
      h('td', { text: `${job.kept.count} (${job.kept.verified} verified), ${bytes(job.kept.bytes)}` }),
      h('td', { class: 'small', text: job.offsite.note }))))));
  if (runs.length) {
    box.append(h('h3', { text: 'Recent runs' }), h('table', { id: 'backup-runs' },
      h('thead', {}, h('tr', {}, ['#', 'Job', 'Status', 'Started', 'Size', 'Took', 'Trigger'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, runs.slice(0, 10).map((run) => h('tr', {},
        h('td', { text: `#${run.id}` }), h('td', { text: run.job }),
        h('td', {}, h('span', { class: run.status, text: `${run.status}${run.prunedAt ? ' (pruned)' : ''}` }),
          run.verification ? h('div', { class: 'small', text: run.verification.checks.map((c) => `${c.skipped ? '-' : c.ok ? '✓' : '✗'} ${c.name}`).join('  ') }) : null),
        h('td', {}, time(run.startedAt)), h('td', { text: bytes(run.bytes) }), h('td', { text: ms(run.durationMs) }), h('td', { text: run.trigger }))))));
  }
}

function spread(s) {
  return s.count === 0 ? 'no data' : `median ${ms(s.medianMs)}, p90 ${ms(s.p90Ms)} (${s.count})`;
}

function renderDora(overview) {
  const box = $('dora');
  box.replaceChildren();
  const section = overview.dora;
  if (!section.ok) { box.append(h('dt', { text: 'error' }), h('dd', {}, sectionError(section))); return; }
  const f = section.value;
  const rate = f.changeFailures.rate === null ? 'no deployments' : `${Math.round(f.changeFailures.rate * 100)}% (${f.changeFailures.failed} of ${f.changeFailures.total})`;
  const facts = [
    ['Deployment frequency', `${f.deployments} in ${f.days} d (${f.perDay}/day)`],
    ['Lead time for changes', spread(f.leadTime)],
    ['Change failure rate', rate],
    ['Time to restore', `${spread(f.timeToRestore)}${f.timeToRestore.open ? `; ${f.timeToRestore.open} not restored yet` : ''}`],
  ];
  for (const [term, value] of facts) box.append(h('dt', { text: term }), h('dd', { text: value }));
}

function renderNotifications(overview) {
  const section = overview.notifications;
  if (!section.ok || !section.value) return [];
  const lines = [];
  for (const w of section.value.webhooks) {
    if (w.retrying) lines.push(`notifications: ${w.webhook} retrying ${w.retrying.event} (${w.retrying.attempts} attempts, last: ${w.retrying.lastError ?? '?'})`);
    if (w.failed > 0 && w.lastFailure) lines.push(`notifications: ${w.webhook} gave up on ${w.failed} event(s), last ${w.lastFailure.event}: ${w.lastFailure.error ?? '?'}`);
  }
  return lines;
}

function render(overview) {
  state.overview = overview;
  renderApps(overview);
  renderLive(overview);
  renderSlots(overview);
  renderHistory(overview);
  renderReleases(overview);
  renderBackups(overview);
  renderDora(overview);
  const warnings = renderNotifications(overview);
  $('updated').textContent = `updated ${new Date(overview.at).toLocaleTimeString()}${warnings.length ? ` · ${warnings.join(' · ')}` : ''}`;
}

async function load() {
  try {
    const query = new URLSearchParams({ app: state.app, since: state.since });
    const overview = await (await api(`/api/overview?${query}`)).json();
    render(overview);
    showProblem(null);
  } catch (error) {
    showProblem(error);
  }
}

// ---- actions: a confirmation dialog with a reason, then the rollout's progress as it streams ----

function openDialog(id) {
  const dialog = $(id);
  dialog.querySelector('form').reset();
  dialog.showModal();
  dialog.querySelector('input[type="text"]').focus();
}

function openSwitch() {
  const status = state.overview?.status.ok ? state.overview.status.value : null;
  if (!status) return;
  const target = status.slots.find((slot) => !slot.live && slot.releaseId);
  if (!target) return;
  $('switch-dialog').dataset.slot = target.slot;
  $('switch-summary').textContent = `Move ${status.app}'s traffic from ${status.liveSlot ?? 'nothing'} (${shortId(status.liveReleaseId)}) to ${target.slot} (${shortId(target.releaseId)}). `
    + `The agent checks ${target.slot}'s health first, then watches it and swaps back on failure.`;
  $('switch-confirm').textContent = `Switch to ${target.slot}`;
  openDialog('switch-dialog');
}

function openRollback() {
  const overview = state.overview;
  const status = overview?.status.ok ? overview.status.value : null;
  if (!status) return;
  const select = $('rollback-to');
  select.replaceChildren(h('option', { value: '', text: 'the previous good release (deploy order)' }));
  for (const r of overview.releases.ok ? overview.releases.value : []) {
    if (r.releaseId === status.liveReleaseId) continue;
    select.append(h('option', { value: r.releaseId, text: `${shortId(r.releaseId)} · ${r.state} · ${ago(r.createdAt)}` }));
  }
  $('rollback-summary').textContent = `${status.app} serves ${shortId(status.liveReleaseId)} from ${status.liveSlot}. `
    + 'A rollback starts the chosen release (or reuses its warm slot), health-checks it, switches, and watches it.';
  openDialog('rollback-dialog');
}

function progressLine(line) {
  if (line.type === 'event') {
    const mark = { started: '…', ok: '✓', failed: '✗', info: '·' }[line.status] ?? '·';
    return `${mark} ${line.step}${line.elapsedMs !== null ? ` ${ms(line.elapsedMs)}` : ''}${line.message ? `  ${line.message}` : ''}`;
  }
  return null;
}

function resultText(result) {
  const live = `live: ${result.liveSlot ?? 'none'} (${shortId(result.liveReleaseId)})`;
  if (result.outcome === 'succeeded') return { ok: true, text: `#${result.deploymentId} ${result.kind} succeeded; ${live}` };
  return { ok: false, text: `#${result.deploymentId} ${result.kind} ${result.outcome}${result.error ? `: ${result.error.message}` : ''}; ${live}` };
}

async function runAction(kind, body) {
  state.busy = true;
  if (state.overview) renderLive(state.overview);
  const lines = $('progress-lines');
  const result = $('progress-result');
  lines.replaceChildren();
  result.textContent = `${kind}: waiting for the agent…`;
  result.className = '';
  $('progress-title').textContent = kind === 'switch' ? `Switch to ${body.slot}` : 'Rollback';
  $('progress').hidden = false;
  showProblem(null);
  try {
    const response = await api(`/api/apps/${encodeURIComponent(state.session.app)}/${kind}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [state.session.csrfHeader]: state.session.csrfToken },
      body: JSON.stringify(body),
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    let ended = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const text = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!text) continue;
        const line = JSON.parse(text);
        if (line.type === 'result') {
          const { ok, text: summary } = resultText(line);
          result.textContent = summary;
          result.className = ok ? 'ok' : 'bad';
          ended = true;
        } else if (line.type === 'error') {
          result.textContent = `the progress stream broke: ${errorText(line.error)}`;
          result.className = 'bad';
          ended = true;
        } else {
          const textLine = progressLine(line);
          if (textLine) lines.append(h('li', { text: textLine }));
        }
      }
    }
    if (!ended) { result.textContent = 'the progress stream ended without a result: see the history'; result.className = 'bad'; }
  } catch (error) {
    result.textContent = `${kind} refused`;
    result.className = 'bad';
    showProblem(error);
  } finally {
    state.busy = false;
    await load();
  }
}

function wireDialog(id, submit) {
  const dialog = $(id);
  const form = dialog.querySelector('form');
  dialog.querySelector('.cancel').addEventListener('click', () => dialog.close());
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      form.elements.reason.setCustomValidity('say why: it is recorded in the history');
      form.reportValidity();
      return;
    }
    dialog.close();
    void submit(form, reason);
  });
  form.elements.reason.addEventListener('input', () => form.elements.reason.setCustomValidity(''));
}

async function start() {
  const params = new URLSearchParams(location.search);
  try {
    state.session = await (await api('/api/session')).json();
  } catch (error) {
    showProblem(error);
    return;
  }
  state.app = params.get('app') || state.session.app;
  $('connection').textContent = `${state.session.app}${state.session.env ? ` (${state.session.env})` : ''} on ${state.session.host}`;
  $('refresh').addEventListener('click', () => void load());
  $('switch-open').addEventListener('click', openSwitch);
  $('rollback-open').addEventListener('click', openRollback);
  $('dora-since').addEventListener('change', (event) => { state.since = event.target.value; void load(); });
  $('dora-form').addEventListener('submit', (event) => event.preventDefault());
  wireDialog('switch-dialog', (_form, reason) => runAction('switch', { slot: $('switch-dialog').dataset.slot, reason }));
  wireDialog('rollback-dialog', (form, reason) => runAction('rollback', {
    reason, force: form.elements.force.checked, ...(form.elements.to.value ? { to: form.elements.to.value } : {}),
  }));
  await load();
  setInterval(() => {
    const dialogOpen = document.querySelector('dialog[open]') !== null;
    if (!state.busy && !dialogOpen && document.visibilityState === 'visible') void load();
  }, REFRESH_MS);
}

void start();
