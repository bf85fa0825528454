import { writeFile } from 'node:fs/promises';
import { it } from 'vitest';
import { sifTransport } from './index.js';
import { buildTestSif, singularityMetadataEntries } from './test-support/sif-writer.js';

it('smoke', async () => {
  for (const file of ['testdata/busybox_latest.sif', '/tmp/sifwork/smoke/made.sif']) {
    if (file.includes('made')) {
      await writeFile(file, await buildTestSif({
        definitionFile: 'Bootstrap: scratch\n%environment\n  export A=1\n# c\n%runscript\n  echo hi "$@"\n%labels\n x y\n',
        entries: [...singularityMetadataEntries('#!/bin/sh\necho hi\n'), { type: 'file', path: 'bin/sh', content: 'x', mode: 0o755 }, { type: 'fifo', path: 'run/fifo' }, { type: 'char-device', path: 'dev/null', major: 1, minor: 3, mode: 0o666 }],
      }));
    }
    const source = await sifTransport.parseReference(file).newImageSource();
    const manifest = await source.getManifest();
    console.log(Buffer.from(manifest.bytes).toString());
    const m = JSON.parse(Buffer.from(manifest.bytes).toString());
    const c = await source.getBlob({ digest: m.config.digest, size: -1 });
    for await (const chunk of c.stream) console.log(chunk.toString());
    await source.close();
  }
});
