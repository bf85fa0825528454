// Lets a plain `node` child process run this package's TypeScript sources (for cross-process tests):
// `node --conditions=@gantry/source --import ./register-typescript.mjs worker.ts`.
import { register } from 'node:module';

register('./typescript-hooks.mjs', import.meta.url);
