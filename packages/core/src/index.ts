export * from './config/index.js';
export * from './copy/index.js';
export * from './digest.js';
export * from './errors.js';
export * from './manifest/index.js';
export * from './policy/index.js';
export * from './reference/index.js';
export * from './transport/index.js';
