export * from './engine.js';
export * from './pool.js';
