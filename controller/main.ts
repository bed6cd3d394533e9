#!/usr/bin/env node
import { main, reportCrash } from './cli.js';

// Whatever escapes main() is a bug: it gets one line and exit code 1, never a runtime dump. An
// uncaught exception leaves the process in an unknown state, so it exits at once.
process.on('uncaughtException', (error) => process.exit(reportCrash(error, process.stderr, process.env)));
process.on('unhandledRejection', (error) => process.exit(reportCrash(error, process.stderr, process.env)));

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => process.exit(reportCrash(error, process.stderr, process.env)),
);
