// The local demo: a whole Slipway installation on loopback (private sshd, nginx, PM2 home and
// agent), then the sample app deployed with the real CLI: blue first, a second commit to green,
// and nginx switched to it. Then a real app: express with a native addon, described by its own
// deploy.spec.json, its secrets put on the host with `deploy env set` (values from the environment,
// never the command line), built on the controller (clean checkout, npm ci, build, prune), pushed,
// changed, diffed and rolled back; then staging and production of it on one box, and a promotion of
// the exact staging artifact to production; last, a fleet: one environment on three hosts (network
// namespaces on this machine) rolled out in batches, and a failure on the third host that reverts the
// first two. Run through `bash scripts/demo`, which installs and builds first.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startStack, type Stack } from '../test/helpers/stack.js';
import { CONTROLLER_MAIN } from '../test/helpers/agent-process.js';
import { DEPS_APP_DIR, depsSpec } from '../test/helpers/real-apps.js';
import { npmOfflineEnv, requireWarmNpmCache } from '../test/helpers/npm-cache.js';
import { startFleetLab, type FleetLab } from '../test/helpers/fleet-lab.js';

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m${text}\x1b[0m\n`);
}

function deploy(stack: Stack, args: string[], env: Record<string, string> = {}): Promise<number | null> {
  process.stdout.write(`$ deploy ${args.join(' ')}\n`);
  return deployIn(stack.repo.dir, args, env);
}

/** The CLI in `cwd`, its output on this terminal; resolves with its exit code. */
function deployIn(cwd: string, args: string[], env: Record<string, string> = {}): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CONTROLLER_MAIN, ...args], { cwd, stdio: 'inherit', env: { ...process.env, SSH_AUTH_SOCK: '', ...env } });
    child.once('error', reject);
    child.once('close', resolve);
  });
}

async function showLive(stack: Stack): Promise<string> {
  const answer = await stack.get('/');
  const body = JSON.parse(answer.body) as { release: string; slot: string; message: string };
  process.stdout.write(`GET ${stack.publicUrl}/ → ${answer.status} slot=${body.slot} release=${body.release} "${body.message}"\n`);
  return body.release;
}

/** Part two: an app with real npm dependencies and its own spec, on a host configured by policy only. */
async function realApp(): Promise<void> {
  requireWarmNpmCache();
  say('4. A real app: express + a native addon, its processes, routes and build in deploy.spec.json; its secrets set with deploy env');
  const stack = await startStack({ app: 'shop', appDir: DEPS_APP_DIR, envFileContent: '', policy: { serverNames: ['_'] } });
  // The demo installs from the npm cache scripts/setup warmed, so it needs no network.
  const npm = npmOfflineEnv();
  try {
    process.stdout.write(`app    ${stack.repo.dir} (agent.json holds only the host policy: listen ports, server names, a slot port range)\n`);
    await stack.repo.commit({ 'deploy.spec.json': depsSpec('controller', stack.publicPort) }, 'describe the app in deploy.spec.json');
    // The app's secrets go to the host's env file from deploy's own environment (as a CI job's
    // secrets would), never from the command line; deploy env lists the keys, never a value.
    if (await deploy(stack, ['env', 'set', 'DEPS_GREETING', 'DEPS_API_TOKEN'], { DEPS_GREETING: 'hello', DEPS_API_TOKEN: randomBytes(16).toString('hex') }) !== 0) throw new Error('deploy env set failed');
    await deploy(stack, ['env']);
    if (await deploy(stack, ['push'], npm) !== 0) throw new Error('the real app\'s first push failed');
    const first = JSON.parse((await stack.get('/')).body) as { release: string; banner: string };
    process.stdout.write(`GET ${stack.publicUrl}/ → release ${first.release}, "${first.banner}" (built on the controller, dev dependencies pruned)\n`);

    say('5. Change the code and the spec together (a new env value for the process), push, and see the spec diff');
    const spec = JSON.parse(depsSpec('controller', stack.publicPort)) as { processes: { web: { env?: Record<string, string> } } };
    spec.processes.web.env = { FEATURE_FLAG: 'on' };
    await stack.repo.commit({ 'deploy.spec.json': `${JSON.stringify(spec, null, 2)}\n`, 'message.txt': 'deps app, second commit\n' }, 'second commit');
    if (await deploy(stack, ['push'], npm) !== 0) throw new Error('the real app\'s second push failed');
    await deploy(stack, ['diff', first.release]);

    say('6. Roll back: the code and its spec go back together, in one flip');
    if (await deploy(stack, ['rollback', '--reason', 'demo']) !== 0) throw new Error('the rollback failed');
    const back = JSON.parse((await stack.get('/')).body) as { release: string };
    process.stdout.write(`GET ${stack.publicUrl}/ → release ${back.release}\n`);
    if (back.release !== first.release) throw new Error(`the rollback serves ${back.release}, expected ${first.release}`);
    await promotion(stack, npm);
  } finally {
    await stack.stop();
  }
}

/** Part three: staging and production of the same project on one box, and a promotion between them. */
async function promotion(stack: Stack, npm: Record<string, string>): Promise<void> {
  say('7. Environments: staging (box app shop-staging) and production (box app shop), one artifact for both');
  const apps = stack.agentConfig.apps as Record<string, Record<string, unknown>>;
  apps.shop!.serverNames = ['_', 'shop.test'];
  apps['shop-staging'] = { ...apps.shop, serverNames: ['staging.shop.test'] };
  await writeFile(stack.agentConfigPath, JSON.stringify(stack.agentConfig, null, 2));
  await stack.restartAgent();
  const plain = JSON.parse(await readFile(path.join(stack.repo.dir, 'deploy.config.json'), 'utf8')) as { host: unknown; agent: unknown };
  const config = {
    app: 'shop', agent: plain.agent, defaultEnv: 'staging',
    environments: {
      staging: { app: 'shop-staging', hosts: [plain.host], spec: { serverNames: ['staging.shop.test'], env: { SHOP_ENV: 'staging' } } },
      production: {
        hosts: [plain.host], requireApproval: true, promotion: { from: 'staging', maxAge: '1d' },
        spec: { serverNames: ['shop.test'], env: { SHOP_ENV: 'production' } },
      },
    },
  };
  await stack.repo.commit({ 'deploy.config.json': `${JSON.stringify(config, null, 2)}\n`, 'message.txt': 'deps app, release candidate\n' }, 'staging and production');
  process.stdout.write(`deploy.config.json now names two environments:\n${JSON.stringify(config.environments, null, 2)}\n`);
  if (await deploy(stack, ['push', '--env', 'staging'], npm) !== 0) throw new Error('the staging push failed');
  const staged = JSON.parse((await stack.getHost('staging.shop.test')).body) as { release: string };
  process.stdout.write(`GET http://staging.shop.test/ → release ${staged.release}\n`);

  say('8. Promote exactly that artifact to production: the staging gate, the approval (--yes), the same sha256');
  if (await deploy(stack, ['promote', '--from', 'staging', '--to', 'production', '--yes']) !== 0) throw new Error('the promotion failed');
  const promoted = JSON.parse((await stack.getHost('shop.test')).body) as { release: string };
  process.stdout.write(`GET http://shop.test/ → release ${promoted.release}\n`);
  if (promoted.release !== staged.release) throw new Error(`production serves ${promoted.release}, staging ${staged.release}`);
  await deploy(stack, ['history', '--env', 'production', '-n', '3']);
}

/** The fleet's CLI (its deploy.config.json lists the three hosts; the lab keeps it outside the repository). */
function deployFleet(lab: FleetLab, args: string[]): Promise<number | null> {
  process.stdout.write(`$ deploy ${args.join(' ')}\n`);
  return deployIn(lab.repo.dir, ['--config', lab.configPath, ...args]);
}

async function showFleet(lab: FleetLab): Promise<string[]> {
  const served = await lab.servedAll();
  for (const [i, answer] of served.entries()) {
    process.stdout.write(`GET http://${lab.hosts[i]!.address}/ (${lab.hosts[i]!.name}) → ${answer ? `slot=${answer.slot} release=${answer.release}` : 'no answer'}\n`);
  }
  return served.map((a) => a?.release ?? 'none');
}

/** Part four: one environment on three hosts, rolled out in batches; a failure on the last host reverts the others. */
async function fleet(): Promise<void> {
  say('9. A fleet: production on three hosts (each in its own network namespace with sshd, nginx, PM2 and the agent)');
  const lab = await startFleetLab({
    hosts: 3,
    rollout: { batch: 1, bake: '2s' },
    relay: true,
    stack: { appConfig: { watch: { windowMs: 3_000, intervalMs: 200, failuresToRollback: 3, keepPreviousWarm: true } } },
  });
  try {
    process.stdout.write(`hosts  ${lab.hosts.map((h) => `${h.name} ${h.address}`).join(', ')}; rollout: batches of 1 host, 2 s bake after each;`
      + ' each host has a relay address: a push sends the bytes once, to h1, and h2/h3 fetch them from h1\n');
    if (await deployFleet(lab, ['push']) !== 0) throw new Error('the fleet\'s first push failed');
    // A bigger second release (an 8 MB asset): uploaded once to h1, relayed to h2 and h3.
    await lab.repo.commit({ 'message.txt': 'fleet, second release\n', 'public/asset.txt': randomBytes(6 * 1024 * 1024).toString('base64') }, 'fleet: second release');
    if (await deployFleet(lab, ['push']) !== 0) throw new Error('the fleet\'s second push failed');
    const good = await showFleet(lab);
    await deployFleet(lab, ['status']);

    say('10. A release that fails on the third host: the rollout stops and the hosts that already switched go back (one flip each)');
    const envFile = lab.hosts[2]!.stack.envFile;
    const original = await readFile(envFile, 'utf8');
    await appendFile(envFile, 'SAMPLE_FAIL_HEALTH=1\n');
    try {
      await lab.repo.commit({ 'message.txt': 'fleet, third release (unhealthy on h3)\n' }, 'fleet: third release');
      const code = await deployFleet(lab, ['push']);
      process.stdout.write(`deploy exited ${code} (4: rolled back)\n`);
      if (code !== 4) throw new Error(`the failing fleet push exited ${code}, expected 4 (rolled back)`);
    } finally {
      await writeFile(envFile, original, { mode: 0o600 });
    }
    const after = await showFleet(lab);
    if (after.some((r) => r !== good[0])) throw new Error(`after the revert the hosts serve ${after.join(', ')}, expected ${good[0]} everywhere`);
    await deployFleet(lab, ['history', '-n', '3']);
  } finally {
    await lab.stop();
  }
}

async function main(): Promise<void> {
  const keep = process.argv.includes('--keep');
  say('Starting a local Slipway host on loopback: sshd, nginx, PM2 and slipway-agent…');
  const stack = await startStack();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    say('Stopping the demo host (sshd, nginx, PM2, agent) and removing its temp dir…');
    await stack.stop();
  };
  process.once('SIGINT', () => { void stop().then(() => process.exit(130)); });
  try {
    process.stdout.write(`sshd   127.0.0.1:${stack.sshd.port}\nnginx  ${stack.publicUrl}\nagent  127.0.0.1:${stack.agentPort} (reached through SSH)\napp    ${stack.repo.dir}\n`);

    say('1. Deploy the sample app to blue');
    if (await deploy(stack, ['push', '--slot', 'blue']) !== 0) throw new Error('the blue deploy failed');
    await showLive(stack);

    say('2. Commit a change and deploy it to green');
    const sha = await stack.repo.commit({ 'message.txt': 'hello from the second commit, served by green\n' }, 'demo: second commit');
    if (await deploy(stack, ['push', '--slot', 'green']) !== 0) throw new Error('the green deploy failed');
    const served = await showLive(stack);

    say('3. Status');
    await deploy(stack, ['status']);

    // A release id starts with the commit it was packed from (then its content digest).
    const ofCommit = served.startsWith(`${sha.slice(0, 12)}-`);
    say(ofCommit ? `nginx at ${stack.publicUrl} now serves release ${served} of commit ${sha} from green; blue is still running as the warm standby.` : `unexpected: nginx serves ${served}, expected a release of ${sha}`);
    if (!ofCommit) process.exitCode = 1;
    if (!keep) await realApp();
    if (!keep) await fleet();
    if (keep) {
      say(`The demo host keeps running (--keep). Try: curl -i ${stack.publicUrl}/   (cd ${stack.repo.dir} && node ${CONTROLLER_MAIN} switch blue). Ctrl-C stops it.`);
      await new Promise(() => undefined);
    }
  } finally {
    await stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
