import { defineConfig } from 'vitest/config';

// Tests under test/slow/ (an entry over 4 GiB, ...) run with `npm run test:slow`, not in `npm test`.
const slow = process.env.OJS_ML_SLOW === '1';

export default defineConfig({
  test: {
    include: slow ? ['test/slow/**/*.test.ts'] : ['test/**/*.test.ts'],
    exclude: slow ? [] : ['test/slow/**', '**/node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The suite spawns the CLI and real tools; two cores is the CI machine.
    maxWorkers: 2,
  },
});
