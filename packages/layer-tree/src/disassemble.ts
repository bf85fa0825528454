/**
 * Reads a layer tar without writing files: its tar-split, uncompressed digest and size, as `applyLayer`
 * records them. For a destination that stores the tar as it is, or to check a tar-split.
 */
import { Crc64 } from './crc64.js';
import { TarStreamReader } from './tar-reader.js';
import { type TarSplitStyle, TarSplitWriter } from './tar-split.js';

export interface DisassembleResult {
  uncompressedDigest: string;
  uncompressedSize: number;
  tarSplitGzip: Buffer;
}

export async function disassembleTar(
  input: AsyncIterable<Uint8Array>,
  options: { signal?: AbortSignal; tarSplitStyle?: TarSplitStyle } = {},
): Promise<DisassembleResult> {
  const reader = new TarStreamReader(input);
  const writer = new TarSplitWriter();
  let succeeded = false;
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      if (writer.needsDrain) await writer.drained();
      const entry = await reader.next();
      if (entry === undefined) break;
      writer.addSegment(entry.raw);
      const crc = new Crc64();
      for (;;) {
        const chunk = await reader.readData();
        if (chunk === undefined) break;
        crc.update(chunk);
      }
      writer.addFile(entry.header.nameBytes, entry.header.size, entry.header.size > 0 ? crc.digest() : null);
    }
    writer.addSegment(reader.end);
    for await (const chunk of reader.trailing()) writer.addSegment(chunk);
    writer.finishTrailer(options.tarSplitStyle);
    const tarSplitGzip = await writer.finish();
    succeeded = true;
    return {
      uncompressedDigest: `sha256:${reader.digestHex()}`,
      uncompressedSize: reader.bytesRead,
      tarSplitGzip,
    };
  } finally {
    if (!succeeded) {
      reader.close();
      writer.destroy();
    }
  }
}
