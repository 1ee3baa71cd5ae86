import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The suite spawns the CLI and real tools; two cores is the CI machine.
    maxWorkers: 2,
  },
});
