/**
 * Child process for the cross-process concurrency test: writes `count` images named
 * `<prefix>-<n>` into the layout given as first argument, each through its own destination and commit.
 */
import { ociTransport } from '../index.js';
import { buildTestImage, writeThroughDestination } from './images.js';

const [layout, prefix, countText] = process.argv.slice(2);
if (!layout || !prefix || !countText) throw new Error('usage: commit-worker.ts LAYOUT PREFIX COUNT');
for (let position = 0; position < Number(countText); position++) {
  const name = `${prefix}-${position}`;
  const image = buildTestImage({ layers: [{ common: 'base' }, { own: name }], label: name });
  await writeThroughDestination(
    await ociTransport.parseReference(`${layout}:${name}`).newImageDestination(),
    image,
  );
}
