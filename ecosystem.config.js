// Runs slipway-agent itself under PM2 on the VPS: `pm2 start ecosystem.config.js && pm2 save`.
// The agent keeps the apps it deploys in its own PM2 home (agent config "pm2.home"), apart from
// this one, so restarting or upgrading the agent never restarts the apps.
// ESM named export: PM2 loads this file with require(), which returns the module namespace.
export const apps = [
  {
    name: 'slipway-agent',
    script: './dist/agent/main.js',
    args: ['run', '--config', process.env.SLIPWAY_AGENT_CONFIG ?? '/etc/slipway/agent.json'],
    cwd: import.meta.dirname,
    exec_mode: 'fork',
    instances: 1,
    autorestart: true,
    exp_backoff_restart_delay: 200,
    kill_timeout: 15000,
    max_memory_restart: '256M',
    env: { NODE_ENV: 'production' },
  },
];
