// The benchmark's figures and how they are shown: a terminal table, latest.json and latest.md.
// Every figure carries its own baseline (measured in the same run) and the ratio of the medians.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MISSED_GOAL_EXPLANATIONS } from './explanations.js';
import { ratioOf, summarize, type Summary } from './stats.js';

export type Unit = 'ms' | 'MB/s' | 'MB' | 'B' | 'count' | 'req';

export interface Measure {
  label: string;
  summary: Summary | null;
  samples: number[];
}

export interface Goal {
  text: string;
  met: boolean | null;
}

export interface Figure {
  id: string;
  section: string;
  title: string;
  unit: Unit;
  slipway: Measure;
  baseline: Measure | null;
  /** slipway median / baseline median. */
  ratio: number | null;
  goal: Goal | null;
  notes: string[];
}

export type GoalSpec =
  | { kind: 'ratioAtMost'; value: number }
  | { kind: 'ratioAtLeast'; value: number }
  | { kind: 'atMost'; value: number; what?: 'median' | 'max' | 'p99' }
  | { kind: 'zero' }
  | { kind: 'notAboveBaseline' };

function fmtNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 100 || Number.isInteger(value)) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function goalText(spec: GoalSpec, unit: Unit, baselineLabel: string | null): string {
  switch (spec.kind) {
    case 'ratioAtMost': return `≤ ${spec.value}× ${baselineLabel ?? 'baseline'}`;
    case 'ratioAtLeast': return `≥ ${spec.value}× ${baselineLabel ?? 'baseline'}`;
    case 'atMost': return `${spec.what && spec.what !== 'median' ? `${spec.what} ` : ''}≤ ${fmtNumber(spec.value)} ${unit}`;
    case 'zero': return '0';
    case 'notAboveBaseline': return `≤ ${baselineLabel ?? 'baseline'}`;
  }
}

/** Whether a goal holds; null when the figure could not be measured. */
export function goalMet(spec: GoalSpec, slipway: Summary | null, baseline: Summary | null, extra: { p99?: number } = {}): boolean | null {
  if (!slipway) return null;
  const ratio = ratioOf(slipway, baseline);
  switch (spec.kind) {
    case 'ratioAtMost': return ratio === null ? null : ratio <= spec.value;
    case 'ratioAtLeast': return ratio === null ? null : ratio >= spec.value;
    case 'atMost': {
      const value = spec.what === 'max' ? slipway.max : spec.what === 'p99' ? extra.p99 ?? Number.NaN : slipway.median;
      return Number.isFinite(value) ? value <= spec.value : null;
    }
    case 'zero': return slipway.max === 0;
    case 'notAboveBaseline': return baseline === null ? null : slipway.median <= baseline.median;
  }
}

export interface FigureInput {
  id: string;
  section: string;
  title: string;
  unit: Unit;
  slipway: { label?: string; samples: number[] };
  baseline?: { label: string; samples: number[] } | null;
  goal?: GoalSpec;
  /** For atMost goals on p99. */
  p99?: number;
  notes?: string[];
}

export function makeFigure(input: FigureInput): Figure {
  const slipway: Measure = { label: input.slipway.label ?? 'Slipway', samples: input.slipway.samples, summary: summarize(input.slipway.samples) };
  const baseline: Measure | null = input.baseline
    ? { label: input.baseline.label, samples: input.baseline.samples, summary: summarize(input.baseline.samples) }
    : null;
  const goal = input.goal
    ? {
        text: goalText(input.goal, input.unit, baseline?.label ?? null),
        met: goalMet(input.goal, slipway.summary, baseline?.summary ?? null, input.p99 === undefined ? {} : { p99: input.p99 }),
      }
    : null;
  return {
    id: input.id, section: input.section, title: input.title, unit: input.unit, slipway, baseline,
    ratio: ratioOf(slipway.summary, baseline?.summary ?? null), goal, notes: input.notes ?? [],
  };
}

export function formatMeasure(measure: Measure | null, unit: Unit): string {
  if (!measure) return '—';
  const s = measure.summary;
  if (!s) return 'not measured';
  const u = unit === 'count' || unit === 'req' ? '' : ` ${unit}`;
  if (s.n === 1 || s.min === s.max) return `${fmtNumber(s.median)}${u}`;
  return `${fmtNumber(s.median)}${u} (${fmtNumber(s.min)}–${fmtNumber(s.max)})`;
}

export function formatRatio(ratio: number | null): string {
  return ratio === null || !Number.isFinite(ratio) ? '—' : `${ratio.toFixed(2)}×`;
}

function mark(goal: Goal | null): string {
  if (!goal) return '';
  return goal.met === null ? '?' : goal.met ? 'met' : 'MISSED';
}

interface Row { section: string; title: string; slipway: string; baselineLabel: string; baseline: string; ratio: string; goal: string; met: string }

function rows(figures: readonly Figure[]): Row[] {
  return figures.map((f) => ({
    section: f.section,
    title: f.title,
    slipway: formatMeasure(f.slipway, f.unit),
    baselineLabel: f.baseline?.label ?? '',
    baseline: f.baseline ? formatMeasure(f.baseline, f.unit) : '',
    ratio: formatRatio(f.ratio),
    goal: f.goal?.text ?? '',
    met: mark(f.goal),
  }));
}

/** Plain-text table for the terminal. */
export function renderTable(figures: readonly Figure[]): string {
  const header: Row = { section: '', title: 'figure', slipway: 'Slipway median (min–max)', baselineLabel: 'baseline', baseline: 'baseline median (min–max)', ratio: 'ratio', goal: 'goal', met: '' };
  const all = rows(figures);
  const keys: (keyof Row)[] = ['title', 'slipway', 'baselineLabel', 'baseline', 'ratio', 'goal', 'met'];
  const width = Object.fromEntries(keys.map((k) => [k, Math.max(header[k].length, ...all.map((r) => r[k].length))])) as Record<keyof Row, number>;
  const line = (r: Row) => keys.map((k) => r[k].padEnd(width[k])).join('  ').trimEnd();
  const out: string[] = [line(header), keys.map((k) => '-'.repeat(width[k])).join('  ')];
  let section = '';
  for (const r of all) {
    if (r.section !== section) {
      section = r.section;
      out.push(`[${section}]`);
    }
    out.push(line(r));
  }
  return out.join('\n');
}

export interface RunInfo {
  date: string;
  mode: 'full' | 'quick';
  durationS: number;
  machine: Record<string, string | number>;
  config: string[];
  errors: string[];
  notes: string[];
}

export function renderMarkdown(figures: readonly Figure[], info: RunInfo): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|');
  const out: string[] = [
    '# Slipway benchmark: latest results',
    '',
    `Generated by \`npm run bench${info.mode === 'quick' ? ' -- --quick' : ''}\` on ${info.date} in ${info.durationS.toFixed(0)} s.`,
    'Slipway and each baseline run in the same process tree, on the same machine, interleaved; absolute',
    'figures drift with the machine\'s load, the ratios are what to compare.',
    '',
    '## Machine',
    '',
    ...Object.entries(info.machine).map(([k, v]) => `- ${k}: ${v}`),
    '',
    '## Setup',
    '',
    ...info.config.map((c) => `- ${c}`),
    '',
    '## Results',
    '',
    '| section | figure | Slipway median (min–max) | baseline | baseline median (min–max) | ratio | goal | |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows(figures).map((r) => `| ${[r.section, r.title, r.slipway, r.baselineLabel, r.baseline, r.ratio, r.goal, r.met].map(cell).join(' | ')} |`),
    '',
  ];
  const missed = figures.filter((f) => f.goal?.met === false);
  if (missed.length > 0) {
    out.push('## Goals missed in this run', '');
    for (const f of missed) out.push(`- **${f.title}** (goal ${f.goal!.text}, ratio ${formatRatio(f.ratio)}): ${MISSED_GOAL_EXPLANATIONS[f.id] ?? 'not profiled yet.'}`);
    out.push('');
  }
  const noted = figures.filter((f) => f.notes.length > 0);
  if (noted.length > 0 || info.notes.length > 0) {
    out.push('## Notes (per figure)', '');
    for (const n of info.notes) out.push(`- ${n}`);
    for (const f of noted) for (const n of f.notes) out.push(`- ${f.title}: ${n}`);
    out.push('');
  }
  if (info.errors.length > 0) {
    out.push('## Errors', '', ...info.errors.map((e) => `- ${e}`), '');
  }
  return out.join('\n');
}

export async function writeResults(dir: string, figures: readonly Figure[], info: RunInfo): Promise<{ json: string; md: string }> {
  await fs.mkdir(dir, { recursive: true });
  const json = path.join(dir, 'latest.json');
  const md = path.join(dir, 'latest.md');
  await fs.writeFile(json, `${JSON.stringify({ ...info, figures }, null, 2)}\n`);
  await fs.writeFile(md, renderMarkdown(figures, info));
  return { json, md };
}
