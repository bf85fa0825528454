#!/usr/bin/env node
// Rebuilds examples/hello, the example image the README's first command copies: a small
// multi-platform OCI layout (linux/amd64 and linux/arm64/v8) made by Gantry's deterministic fixture
// builder, so running this again gives the same bytes. Needs `pnpm build` first.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const layout = join(root, 'examples/hello');
const image = (architecture, variant) => ({
  format: 'oci',
  platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
  config: {
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    Cmd: ['/bin/cat', '/hello.txt'],
    Labels: {
      'org.opencontainers.image.title': 'hello',
      'org.opencontainers.image.source': 'gantry examples',
    },
  },
  layers: [
    {
      createdBy: 'COPY hello.txt /',
      entries: [
        { type: 'directory', path: 'etc' },
        { type: 'file', path: 'etc/hostname', content: 'hello\n' },
        {
          type: 'file',
          path: 'hello.txt',
          content: `Hello from a Gantry example image (${architecture}).\n`,
        },
      ],
    },
    {
      createdBy: 'ADD greeting /usr/share/greeting',
      entries: [
        { type: 'directory', path: 'usr/share/greeting' },
        { type: 'file', path: 'usr/share/greeting/README', content: 'Copied with gantry.\n' },
        { type: 'symlink', path: 'usr/share/greeting/hello.txt', target: '../../../hello.txt' },
      ],
    },
  ],
});
const work = await mkdtemp(join(tmpdir(), 'gantry-example-'));
const fixture = await buildFixtureImage(
  { format: 'oci', images: [image('amd64'), image('arm64', 'v8')] },
  { directory: work },
);
await rm(layout, { recursive: true, force: true });
await writeFixtureToOciLayout(fixture, layout, 'latest');
await rm(work, { recursive: true, force: true });
console.log(`wrote ${layout} (${fixture.topLevel.digest})`);
