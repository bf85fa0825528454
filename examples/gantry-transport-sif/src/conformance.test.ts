import { writeFile } from 'node:fs/promises';
import { runTransportConformanceSuite } from '@gantry/core/testing';
import { createSifTransport } from './index.js';
import { buildTestSif, singularityMetadataEntries } from './test-support/sif-writer.js';

runTransportConformanceSuite({
  name: 'sif',
  transport: createSifTransport(),
  // `directory` does not exist yet but its parent does: it names the SIF file itself.
  createReference: ({ directory }) => directory,
  capabilities: { readOnly: true },
  invalidReferences: [''],
  async createStoredImage({ directory }) {
    const file = `${directory}.sif`;
    await writeFile(
      file,
      await buildTestSif({
        definitionFile:
          'Bootstrap: scratch\n%environment\n  export GREETING=hello\n%runscript\n  echo "$GREETING"\n',
        entries: [
          ...singularityMetadataEntries('#!/bin/sh\necho "$GREETING"\n'),
          { type: 'file', path: 'bin/app', content: 'binary', mode: 0o755 },
          { type: 'hardlink', path: 'bin/app-link', target: 'bin/app' },
        ],
      }),
    );
    return file;
  },
});
