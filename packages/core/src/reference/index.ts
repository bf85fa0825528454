export {};
export type { DockerReference } from './types.js';
