export * from './errors.js';
export * from './format.js';
export * from './range.js';
export * from './request.js';
export * from './spec-text.js';
export * from './template.js';
export * from './uri.js';
