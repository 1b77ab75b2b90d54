'use strict';
/**
 * Lint: typescript-eslint's type-aware rules, chosen for what a daemon
 * serving many operations must never do: leave a promise unawaited (a
 * failure nobody sees, a step that runs after its lock was released) or
 * block the event loop with a synchronous process or sleep.
 */
const tseslint = require('typescript-eslint');

const BLOCKING = [
  { name: 'node:child_process', importNames: ['spawnSync', 'execSync', 'execFileSync'], message: 'blocks the event loop: use run() from lib/process' },
  { name: 'child_process', importNames: ['spawnSync', 'execSync', 'execFileSync'], message: 'blocks the event loop: use run() from lib/process' },
];

module.exports = tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'native/**', 'bench/results/**', 'demo-root/**', '**/*.js'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { project: './tsconfig.json', tsconfigRootDir: __dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', {
        // node:test's test() and describe() return promises the runner awaits itself.
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }],
      }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-var': 'error',
      'prefer-const': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  {
    // The library a daemon runs: nothing that stops every other call while it waits.
    files: ['lib/**/*.ts', 'runtime/**/*.ts', 'storage/**/*.ts', 'archive/**/*.ts', 'checkpoint/**/*.ts', 'ops/**/*.ts', 'daemon/**/*.ts', 'migrate/**/*.ts', 'backup/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: BLOCKING }],
      'no-restricted-properties': ['error', { object: 'Atomics', property: 'wait', message: 'blocks the event loop: await sleep() from lib/poll' }],
    },
  },
);
